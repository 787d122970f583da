#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| podnet_fuzz::explain::explain_nft_json(data));
