//! The shim's control protocol: one request line as berth-shim decodes it. Invariant: a decoded
//! request, encoded again, decodes to itself.
#![no_main]

use berth_proto::protocol::decode_request;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = decode_request(data) {
        let line = serde_json::to_vec(&req).expect("encodable");
        assert_eq!(decode_request(&line).expect("re-decodes"), req);
    }
});
