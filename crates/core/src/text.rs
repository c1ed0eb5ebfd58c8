//! Is this text, and in which encoding? UTF-8, UTF-16 with a byte order mark, or a legacy
//! encoding (GBK/GB18030, Big5, Shift_JIS, EUC-KR, windows-125x …) that `chardetng` detects and
//! `encoding_rs` decodes without a single malformed sequence; in none of them binary content.
//!
//! The check runs on a stream, chunk by chunk, in constant memory. While every byte so far is
//! ASCII nothing is decided (ASCII is valid in all of them); the first non-ASCII bytes decide:
//! UTF-8 if they are UTF-8, else the encoding `chardetng` names for them. A later byte that the
//! chosen encoding cannot decode makes the whole file not text.

use encoding_rs::{Decoder, DecoderResult, Encoding, UTF_16BE, UTF_16LE};

/// The charset of content that is all ASCII or UTF-8.
pub const UTF8: &str = "utf-8";

/// How many bytes from the first non-ASCII one are held to decide the encoding on (fewer only
/// when the content ends sooner): enough for `chardetng`, and never a decision on one cut byte.
const DECIDE_LEN: usize = 8 * 1024;

/// Why content is not text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotText(pub &'static str);

enum State {
    /// The first bytes, held until a byte order mark can be told apart (at most 2 bytes).
    Start(Vec<u8>),
    /// Every byte so far is ASCII.
    Ascii,
    /// Holds the bytes from the first non-ASCII one until there are enough to decide on.
    Deciding(Vec<u8>),
    /// UTF-8; holds an incomplete character cut by a chunk boundary.
    Utf8(Vec<u8>),
    /// Another encoding, decoded to check it (the decoded text is only scanned, never kept).
    Decoding(Box<Decoder>),
}

/// An incremental text check: [`TextCheck::feed`] every chunk, then [`TextCheck::finish`].
pub struct TextCheck {
    state: State,
}

impl std::fmt::Debug for TextCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextCheck").field("charset", &self.charset()).finish()
    }
}

impl Default for TextCheck {
    fn default() -> Self {
        Self::new()
    }
}

impl TextCheck {
    pub fn new() -> Self {
        Self {
            state: State::Start(Vec::with_capacity(3)),
        }
    }

    /// The charset decided so far (`utf-8` while undecided), lowercase, as in `charset=`.
    pub fn charset(&self) -> String {
        match &self.state {
            State::Decoding(d) => d.encoding().name().to_ascii_lowercase(),
            _ => UTF8.to_owned(),
        }
    }

    /// Checks the next chunk.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), NotText> {
        self.feed_inner(chunk, false)
    }

    /// Ends the check; returns the charset.
    pub fn finish(mut self) -> Result<String, NotText> {
        self.feed_inner(&[], true)?;
        match &self.state {
            State::Utf8(carry) if !carry.is_empty() => Err(NotText("the text ends inside a UTF-8 character")),
            _ => Ok(self.charset()),
        }
    }

    fn feed_inner(&mut self, chunk: &[u8], last: bool) -> Result<(), NotText> {
        if let State::Start(held) = &mut self.state {
            held.extend_from_slice(chunk);
            if held.len() < 3 && !last && is_bom_prefix(held) {
                return Ok(());
            }
            let held = std::mem::take(held);
            let (state, skip) = match held.as_slice() {
                [0xEF, 0xBB, 0xBF, ..] => (State::Utf8(Vec::new()), 3),
                [0xFF, 0xFE, ..] => (decoding(UTF_16LE), 2),
                [0xFE, 0xFF, ..] => (decoding(UTF_16BE), 2),
                _ => (State::Ascii, 0),
            };
            self.state = state;
            return self.step(&held[skip..], last);
        }
        self.step(chunk, last)
    }

    fn step(&mut self, chunk: &[u8], last: bool) -> Result<(), NotText> {
        match &mut self.state {
            State::Start(_) => unreachable!("Start is left before any step"),
            State::Ascii => {
                let first = chunk.iter().position(|b| !b.is_ascii());
                if has_binary(&chunk[..first.unwrap_or(chunk.len())]) {
                    return Err(CONTROLS);
                }
                let Some(first) = first else {
                    return Ok(());
                };
                self.state = State::Deciding(Vec::with_capacity(DECIDE_LEN));
                self.step(&chunk[first..], last)
            }
            State::Deciding(held) => {
                let take = (DECIDE_LEN - held.len()).min(chunk.len());
                held.extend_from_slice(&chunk[..take]);
                let rest = &chunk[take..];
                if held.len() < DECIDE_LEN && !last {
                    return Ok(());
                }
                let held = std::mem::take(held);
                let ends = last && rest.is_empty();
                self.state = if utf8_ok(&held, ends) {
                    State::Utf8(Vec::new())
                } else {
                    let mut detector = chardetng::EncodingDetector::new();
                    detector.feed(&held, ends);
                    decoding(detector.guess(None, false))
                };
                self.step(&held, ends)?;
                if ends { Ok(()) } else { self.step(rest, last) }
            }
            State::Utf8(carry) => utf8_feed(carry, chunk),
            State::Decoding(decoder) => decode_check(decoder, chunk, last),
        }
    }
}

fn decoding(encoding: &'static Encoding) -> State {
    State::Decoding(Box::new(encoding.new_decoder_without_bom_handling()))
}

fn is_bom_prefix(held: &[u8]) -> bool {
    [&[0xEF, 0xBB, 0xBF][..], &[0xFF, 0xFE], &[0xFE, 0xFF]]
        .iter()
        .any(|bom| bom.starts_with(held))
}

/// Whether bytes are UTF-8, allowing an incomplete character at the end unless `last`.
fn utf8_ok(bytes: &[u8], last: bool) -> bool {
    match std::str::from_utf8(bytes) {
        Ok(_) => true,
        Err(e) => !last && e.error_len().is_none() && bytes.len() - e.valid_up_to() < 4,
    }
}

const NOT_UTF8: NotText = NotText("the text is not valid UTF-8 throughout");
const CONTROLS: NotText = NotText("the content holds control characters that text does not");

/// Feeds a chunk to an incremental UTF-8 and control character check; `carry` holds an
/// incomplete trailing character (so a C1 control cut between chunks is still seen whole).
fn utf8_feed(carry: &mut Vec<u8>, mut chunk: &[u8]) -> Result<(), NotText> {
    while !carry.is_empty() && !chunk.is_empty() {
        carry.push(chunk[0]);
        chunk = &chunk[1..];
        match std::str::from_utf8(carry) {
            Ok(_) if has_binary(carry) => return Err(CONTROLS),
            Ok(_) => carry.clear(),
            Err(e) if e.error_len().is_none() && carry.len() < 4 => {}
            Err(_) => return Err(NOT_UTF8),
        }
    }
    let valid = match std::str::from_utf8(chunk) {
        Ok(_) => chunk.len(),
        Err(e) if e.error_len().is_none() => {
            carry.extend_from_slice(&chunk[e.valid_up_to()..]);
            e.valid_up_to()
        }
        Err(_) => return Err(NOT_UTF8),
    };
    if has_binary(&chunk[..valid]) {
        Err(CONTROLS)
    } else {
        Ok(())
    }
}

/// Decodes a chunk without keeping the text: any malformed sequence, or a control character
/// that text does not hold, means the content is not text in this encoding.
fn decode_check(decoder: &mut Decoder, mut chunk: &[u8], last: bool) -> Result<(), NotText> {
    let mut out = [0u8; 4096];
    loop {
        let (result, read, written) = decoder.decode_to_utf8_without_replacement(chunk, &mut out, last);
        if has_binary(&out[..written]) {
            return Err(CONTROLS);
        }
        chunk = &chunk[read..];
        match result {
            DecoderResult::InputEmpty => return Ok(()),
            DecoderResult::OutputFull => {}
            DecoderResult::Malformed(_, _) => {
                return Err(NotText("the text is not valid in any encoding filedock knows"));
            }
        }
    }
}

/// Whether decoded text (as UTF-8) holds a C0 control other than tab, line feed, vertical tab,
/// form feed, carriage return, SUB (an old end-of-file mark) and escape, or any C1 control.
fn has_binary(utf8: &[u8]) -> bool {
    const ALLOWED: [u8; 7] = [0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x1A, 0x1B];
    utf8.iter().enumerate().any(|(i, &b)| {
        (b < 0x20 && !ALLOWED.contains(&b)) || (b == 0xC2 && utf8.get(i + 1).is_some_and(|n| (0x80..0xA0).contains(n)))
    })
}

/// Checks a whole buffer (or, unless `complete`, the start of one).
pub fn check(bytes: &[u8], complete: bool) -> Result<String, NotText> {
    let mut t = TextCheck::new();
    t.feed(bytes)?;
    if complete { t.finish() } else { Ok(t.charset()) }
}

/// A text type with the charset `charset` (`text/plain; charset=utf-8` → `…; charset=gbk`).
pub fn with_charset(content_type: &str, charset: &str) -> String {
    let base = content_type.split(';').next().unwrap_or(content_type).trim();
    if charset == UTF8 && !content_type.contains("charset=") {
        return content_type.to_owned();
    }
    format!("{base}; charset={charset}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(encoding: &'static Encoding, s: &str) -> Vec<u8> {
        let (bytes, _, unmappable) = encoding.encode(s);
        assert!(!unmappable, "{} cannot hold the sample", encoding.name());
        bytes.into_owned()
    }

    const CHINESE: &str = "姓名,城市,备注\n张三,北京,这是一个用简体中文写的逗号分隔文件，默认编码来自中文版视窗系统。\n李四,上海,第二行也是中文内容，用来检验编码检测。\n";
    const TRADITIONAL: &str = "這是一個用繁體中文寫的文字檔案，常見於臺灣與香港的舊系統，編碼為大五碼。\n";
    const JAPANESE: &str = "これは日本語のテキストファイルです。古いウィンドウズではシフトJISが使われていました。\n";
    const KOREAN: &str = "이것은 한국어 텍스트 파일입니다. 오래된 시스템은 EUC-KR 인코딩을 사용했습니다.\n";
    const WESTERN: &str = "Café au lait, naïve façade, señor, Müller — “quoted” and ½ price.\n";

    #[test]
    fn legacy_encodings_are_detected() {
        for (enc, text, want) in [
            (encoding_rs::GBK, CHINESE, "gbk"),
            (encoding_rs::BIG5, TRADITIONAL, "big5"),
            (encoding_rs::SHIFT_JIS, JAPANESE, "shift_jis"),
            (encoding_rs::EUC_KR, KOREAN, "euc-kr"),
            (encoding_rs::WINDOWS_1252, WESTERN, "windows-1252"),
        ] {
            let bytes = encode(enc, &text.repeat(20));
            assert_eq!(check(&bytes, true).unwrap(), want, "{}", enc.name());
        }
    }

    #[test]
    fn utf8_and_utf16_with_a_bom() {
        assert_eq!(check(CHINESE.as_bytes(), true).unwrap(), "utf-8");
        assert_eq!(check(b"plain ascii\n", true).unwrap(), "utf-8");
        let mut le = vec![0xFF, 0xFE];
        le.extend(CHINESE.encode_utf16().flat_map(u16::to_le_bytes));
        assert_eq!(check(&le, true).unwrap(), "utf-16le");
        let mut be = vec![0xFE, 0xFF];
        be.extend(CHINESE.encode_utf16().flat_map(u16::to_be_bytes));
        assert_eq!(check(&be, true).unwrap(), "utf-16be");
    }

    #[test]
    fn binary_is_not_text() {
        let mut x = 0x9E37_79B9_7F4A_7C15_u64;
        let random: Vec<u8> = (0..65536)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        assert!(check(&random, true).is_err());
        assert!(check(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01", true).is_err());
        // UTF-16 of binary-looking code units.
        assert!(check(&[0xFF, 0xFE, 0x01, 0x00, 0x02, 0x00], true).is_err());
    }

    #[test]
    fn any_cut_gives_the_same_answer() {
        let gbk = encode(encoding_rs::GBK, &format!("{}{}", "ascii first\n".repeat(900), CHINESE));
        let whole = check(&gbk, true).unwrap();
        assert_eq!(whole, "gbk");
        for cut in [1, 2, 3, 10_800, 10_801, 10_803, gbk.len() - 1] {
            let mut t = TextCheck::new();
            t.feed(&gbk[..cut]).unwrap();
            t.feed(&gbk[cut..]).unwrap();
            assert_eq!(t.finish().unwrap(), whole, "cut at {cut}");
        }
        let utf8 = CHINESE.as_bytes();
        for cut in 0..utf8.len() {
            let mut t = TextCheck::new();
            t.feed(&utf8[..cut]).unwrap();
            t.feed(&utf8[cut..]).unwrap();
            assert_eq!(t.finish().unwrap(), "utf-8", "cut at {cut}");
        }
    }

    #[test]
    fn controls_are_caught_in_ascii_and_utf8_too() {
        let mut ascii = "plain text\n".repeat(1000).into_bytes();
        ascii.extend_from_slice(b"\x00\x01 and more");
        assert!(check(&ascii, true).is_err(), "ASCII with NUL");
        let mut utf8 = CHINESE.as_bytes().repeat(100);
        utf8.extend_from_slice(b"\x07");
        assert!(check(&utf8, true).is_err(), "UTF-8 with BEL");
        // A C1 control (U+0085) cut between two chunks.
        // After the first 8 KiB, where the check streams.
        let mut t = TextCheck::new();
        t.feed(&CHINESE.as_bytes().repeat(200)).unwrap();
        t.feed(b"ok \xC2").unwrap();
        assert!(t.feed(b"\x85 rest").is_err(), "C1 across chunks");
        assert!(check("tabs\tand\r\nlines\x0c\x1b[0m".as_bytes(), true).is_ok());
    }

    #[test]
    fn a_late_bad_byte_is_caught() {
        let mut bytes = CHINESE.as_bytes().repeat(100);
        bytes.extend_from_slice(&[0xFF, 0x00, 0x01]);
        assert!(check(&bytes, true).is_err());
        // Cut short, the same start is fine while more may follow.
        assert!(check(&CHINESE.as_bytes()[..4], false).is_ok());
        // Whole, a character cut short is not UTF-8, and so another encoding's text.
        assert_ne!(check(&CHINESE.as_bytes()[..4], true).unwrap(), "utf-8");
    }

    #[test]
    fn types_take_the_charset() {
        assert_eq!(
            with_charset("text/plain; charset=utf-8", "gbk"),
            "text/plain; charset=gbk"
        );
        assert_eq!(
            with_charset("text/csv; charset=utf-8", "utf-8"),
            "text/csv; charset=utf-8"
        );
        assert_eq!(with_charset("application/json", "utf-8"), "application/json");
        assert_eq!(
            with_charset("application/json", "utf-16le"),
            "application/json; charset=utf-16le"
        );
    }
}
