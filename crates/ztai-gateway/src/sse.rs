//! A sans-I/O parser for server-sent events, as model servers stream them.
//!
//! Bytes go in as they arrive; complete events come out. Lines may end in LF, CRLF or CR and may be
//! split anywhere, including inside a UTF-8 sequence. A line longer than the bound is an error, so
//! a hostile upstream cannot make the gateway buffer without end.

/// One event: its `data` lines joined with `\n`, and its `event` name if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    #[error("upstream sent an event line longer than {0} bytes")]
    LineTooLong(usize),
    #[error("upstream sent an event that is not UTF-8")]
    NotUtf8,
}

#[derive(Debug)]
pub struct SseParser {
    buf: Vec<u8>,
    max_line: usize,
    data: Option<String>,
    event: Option<String>,
    skip_lf: bool,
}

impl SseParser {
    pub fn new(max_line: usize) -> Self {
        SseParser {
            buf: Vec::new(),
            max_line,
            data: None,
            event: None,
            skip_lf: false,
        }
    }

    /// Feeds bytes; appends every event they complete to `out`.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        for &b in bytes {
            if self.skip_lf {
                self.skip_lf = false;
                if b == b'\n' {
                    continue;
                }
            }
            match b {
                b'\n' | b'\r' => {
                    self.skip_lf = b == b'\r';
                    let line = std::mem::take(&mut self.buf);
                    self.line(&line, out)?;
                }
                _ => {
                    if self.buf.len() >= self.max_line {
                        return Err(SseError::LineTooLong(self.max_line));
                    }
                    self.buf.push(b);
                }
            }
        }
        Ok(())
    }

    /// Whether bytes of an unfinished event are buffered.
    pub fn has_partial(&self) -> bool {
        !self.buf.is_empty() || self.data.is_some()
    }

    fn line(&mut self, line: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        if line.is_empty() {
            if let Some(data) = self.data.take() {
                out.push(SseEvent {
                    event: self.event.take(),
                    data,
                });
            }
            self.event = None;
            return Ok(());
        }
        let line = std::str::from_utf8(line).map_err(|_| SseError::NotUtf8)?;
        if line.starts_with(':') {
            return Ok(()); // comment / keep-alive
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "data" => match &mut self.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => self.data = Some(value.to_string()),
            },
            "event" => self.event = Some(value.to_string()),
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse_all(chunks: &[&[u8]]) -> Result<Vec<SseEvent>, SseError> {
        let mut p = SseParser::new(1024);
        let mut out = vec![];
        for c in chunks {
            p.feed(c, &mut out)?;
        }
        Ok(out)
    }

    #[test]
    fn events_split_anywhere_and_any_line_ending_parse_the_same() {
        let text = b"data: {\"a\":1}\n\n: keep-alive\r\nevent: x\r\ndata: two\r\ndata: lines\r\n\r\ndata: [DONE]\r\r";
        let whole = parse_all(&[text]).unwrap();
        assert_eq!(whole.len(), 3);
        assert_eq!(whole[0].data, "{\"a\":1}");
        assert_eq!(
            whole[1],
            SseEvent {
                event: Some("x".into()),
                data: "two\nlines".into()
            }
        );
        assert_eq!(whole[2].data, "[DONE]");
        for i in 0..text.len() {
            let (a, b) = text.split_at(i);
            assert_eq!(parse_all(&[a, b]).unwrap(), whole, "split at {i}");
        }
    }

    #[test]
    fn overlong_lines_and_invalid_utf8_are_errors() {
        let long = vec![b'a'; 2000];
        assert_eq!(parse_all(&[&long]), Err(SseError::LineTooLong(1024)));
        assert_eq!(parse_all(&[b"data: \xff\xfe\n\n"]), Err(SseError::NotUtf8));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let _ = parse_all(&[&bytes]);
        }
    }
}
