//! Links berth-runtime as a position-dependent executable: a PIE's relocated data (vtables,
//! string tables, ~270 KiB here) is private dirty memory and relocation work at every start,
//! and the runtime is started for every container operation. The code is still compiled
//! position-independent; only the final link is fixed (shared libraries keep their ASLR).
fn main() {
    println!("cargo:rustc-link-arg-bin=berth-runtime=-no-pie");
}
