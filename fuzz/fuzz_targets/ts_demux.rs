#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| headend::fuzzing::ts_demux(data));
