//! Request bodies are untrusted bytes: validation answers with an error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ztai_gateway::proxy::{Operation, check_request};

fuzz_target!(|data: &[u8]| {
    for op in [Operation::Chat, Operation::Completion, Operation::Embedding] {
        let _ = check_request(op, data);
    }
});
