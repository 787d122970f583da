#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| podnet_fuzz::nat::kube_objects(data));
