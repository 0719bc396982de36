//! The exporter renders whatever the audit table holds, and someone with database access can put
//! anything there. Every format must refuse a row it cannot read with an error (the sink skips and
//! counts it), never crash, and every event it does render must stay one line, so a crafted field
//! cannot inject a second event into a syslog stream or a JSONL file.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ztai_audit::export::{ExportFormat, format, render};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for f in [ExportFormat::Ocsf, ExportFormat::Cef, ExportFormat::Json] {
        let Ok(event) = render(f, 7, text) else { continue };
        assert!(!event.text.contains('\n') && !event.text.contains('\r'), "{}", event.text);
        let message = format::syslog_message(&event, 13, "h", f);
        let mut framed = Vec::new();
        format::frame_octet_counted(&message, &mut framed);
        assert!(framed.starts_with(message.len().to_string().as_bytes()));
        let hec = format::hec_event(&event, f, "h", None);
        assert!(serde_json::from_str::<serde_json::Value>(&hec).is_ok(), "{hec}");
    }
});
