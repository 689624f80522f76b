#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| meeting_appliance_fuzz::signal(data));
