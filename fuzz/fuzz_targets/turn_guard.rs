#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| meeting_appliance_fuzz::turn_guard(data));
