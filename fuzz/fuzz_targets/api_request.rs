//! berthd's native API: one request line as berthd decodes it, and one answer line as the `berth`
//! CLI decodes it. Invariant: a decoded request, encoded again, decodes to itself.
#![no_main]

use berth_agent::api::{Response, decode_request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match decode_request(data) {
        Ok(req) => {
            let line = serde_json::to_vec(&req).expect("encodable");
            assert_eq!(decode_request(&line).expect("re-decodes"), req);
        }
        Err(Response::Error { .. }) => {}
        Err(other) => panic!("a bad request answered with {other:?}"),
    }
    let _ = serde_json::from_slice::<Response>(data);
});
