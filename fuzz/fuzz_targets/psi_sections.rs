#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| headend::fuzzing::psi_sections(data));
