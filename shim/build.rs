//! Links berth-shim as a position-dependent executable: a PIE's relocated data (vtables, string
//! tables: ~160 KiB here) becomes private dirty memory in every process, i.e. per container.
//! The code is still compiled position-independent; only the final link is fixed.
fn main() {
    println!("cargo:rustc-link-arg-bin=berth-shim=-no-pie");
}
