//! `headend`: the head-end daemon and its offline tools (the code is in the library, `lib.rs`).

fn main() -> std::process::ExitCode {
    headend::main()
}
