//! Decoding script bytes for scanning, and the encoding problems that break a script on
//! the endpoint.
//!
//! Scripts are delivered byte for byte, so the scanner never rewrites them; it decodes a
//! copy to look inside. UTF-8 (with or without a byte-order mark) is borrowed as it is;
//! only UTF-16 (which needs a BOM to be recognised) is decoded into a new string. The
//! decoded text never includes the BOM, so line and column numbers are those an editor
//! shows.

use std::borrow::Cow;

/// How a text file is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TextEncoding {
    /// UTF-8 without a byte-order mark (plain ASCII is this too).
    Utf8,
    /// UTF-8 with the `EF BB BF` byte-order mark.
    Utf8Bom,
    /// UTF-16 little-endian with the `FF FE` byte-order mark.
    Utf16Le,
    /// UTF-16 big-endian with the `FE FF` byte-order mark.
    Utf16Be,
}

impl TextEncoding {
    /// Whether the file starts with a byte-order mark.
    pub fn has_bom(self) -> bool {
        !matches!(self, TextEncoding::Utf8)
    }

    /// Whether the file is UTF-16.
    pub fn is_utf16(self) -> bool {
        matches!(self, TextEncoding::Utf16Le | TextEncoding::Utf16Be)
    }

    /// A short name for messages.
    pub fn as_str(self) -> &'static str {
        match self {
            TextEncoding::Utf8 => "UTF-8",
            TextEncoding::Utf8Bom => "UTF-8 with BOM",
            TextEncoding::Utf16Le => "UTF-16 LE",
            TextEncoding::Utf16Be => "UTF-16 BE",
        }
    }
}

/// A file's text, decoded once, without its byte-order mark.
#[derive(Debug, Clone)]
pub struct Decoded<'a> {
    /// The text (borrowed for UTF-8, owned for UTF-16).
    pub text: Cow<'a, str>,
    /// The encoding it was read as.
    pub encoding: TextEncoding,
}

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// The encoding that was attempted.
    pub encoding: TextEncoding,
    /// Byte offset (in the file) of the first undecodable sequence.
    pub offset: usize,
    /// What went wrong.
    pub reason: &'static str,
}

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Decodes `bytes` as UTF-16 (when it starts with a UTF-16 BOM) or UTF-8.
pub fn decode(bytes: &[u8]) -> Result<Decoded<'_>, DecodeError> {
    if let Some(rest) = bytes.strip_prefix(UTF8_BOM) {
        return from_utf8(rest, TextEncoding::Utf8Bom, UTF8_BOM.len());
    }
    if let Some(rest) = bytes.strip_prefix(b"\xFF\xFE") {
        return from_utf16(rest, TextEncoding::Utf16Le);
    }
    if let Some(rest) = bytes.strip_prefix(b"\xFE\xFF") {
        return from_utf16(rest, TextEncoding::Utf16Be);
    }
    from_utf8(bytes, TextEncoding::Utf8, 0)
}

fn from_utf8(
    bytes: &[u8],
    encoding: TextEncoding,
    skip: usize,
) -> Result<Decoded<'_>, DecodeError> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Ok(Decoded {
            text: Cow::Borrowed(text),
            encoding,
        }),
        Err(e) => Err(DecodeError {
            encoding,
            offset: skip + e.valid_up_to(),
            reason: "invalid UTF-8",
        }),
    }
}

fn from_utf16(bytes: &[u8], encoding: TextEncoding) -> Result<Decoded<'_>, DecodeError> {
    if !bytes.len().is_multiple_of(2) {
        return Err(DecodeError {
            encoding,
            offset: bytes.len() + 1,
            reason: "odd number of bytes in UTF-16 text",
        });
    }
    let be = encoding == TextEncoding::Utf16Be;
    let unit = |i: usize| {
        let pair = [bytes[i], bytes[i + 1]];
        if be {
            u16::from_be_bytes(pair)
        } else {
            u16::from_le_bytes(pair)
        }
    };
    // Scripts saved as UTF-16 are mostly ASCII: copy those units as bytes and decode only
    // the rest (a per-char iterator made UTF-16 files the slowest part of a content scan).
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len() / 2);
    let mut i = 0;
    // Offsets count the 2-byte BOM before `bytes`.
    let bad = |i: usize| DecodeError {
        encoding,
        offset: i + 2,
        reason: "unpaired UTF-16 surrogate",
    };
    while i < bytes.len() {
        let u = unit(i);
        if u < 0x80 {
            out.push(u as u8);
            i += 2;
            continue;
        }
        let (c, width) = if (0xD800..0xDC00).contains(&u) {
            let low = (i + 2 < bytes.len()).then(|| unit(i + 2));
            match low.filter(|l| (0xDC00..0xE000).contains(l)) {
                Some(l) => {
                    let scalar =
                        0x10000 + ((u32::from(u) - 0xD800) << 10) + (u32::from(l) - 0xDC00);
                    (char::from_u32(scalar).ok_or_else(|| bad(i))?, 4)
                }
                None => return Err(bad(i)),
            }
        } else {
            (char::from_u32(u32::from(u)).ok_or_else(|| bad(i))?, 2)
        };
        let mut buf = [0u8; 4];
        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        i += width;
    }
    // Only whole chars were written, so this cannot fail; map it all the same.
    let text = String::from_utf8(out).map_err(|e| bad(e.utf8_error().valid_up_to()))?;
    Ok(Decoded {
        text: Cow::Owned(text),
        encoding,
    })
}

/// Byte offset of the first CRLF line ending and the number of lines ending in CRLF.
pub fn crlf(text: &str) -> Option<(usize, usize)> {
    let first = text.find("\r\n")?;
    let count = text[first..].matches("\r\n").count();
    Some((first, count))
}

/// Byte offset of the first non-ASCII character.
pub fn first_non_ascii(text: &str) -> Option<usize> {
    if text.is_ascii() {
        return None;
    }
    text.bytes().position(|b| !b.is_ascii())
}

/// Byte offset of the first NUL character and how many there are.
pub fn nul(text: &str) -> Option<(usize, usize)> {
    let first = text.find('\0')?;
    Some((first, text[first..].matches('\0').count()))
}

/// Looks like binary data rather than text: a NUL byte in the first 8 KiB of a file that
/// is not UTF-16 (the heuristic git and grep use).
pub fn looks_binary(bytes: &[u8]) -> bool {
    if bytes.starts_with(b"\xFF\xFE") || bytes.starts_with(b"\xFE\xFF") {
        return false;
    }
    bytes[..bytes.len().min(8192)].contains(&0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utf16(text: &str, be: bool) -> Vec<u8> {
        let mut out = if be {
            vec![0xFE, 0xFF]
        } else {
            vec![0xFF, 0xFE]
        };
        for u in text.encode_utf16() {
            out.extend(if be { u.to_be_bytes() } else { u.to_le_bytes() });
        }
        out
    }

    #[test]
    fn decodes_every_supported_encoding_without_the_bom() {
        let d = decode(b"plain").unwrap();
        assert_eq!((d.text.as_ref(), d.encoding), ("plain", TextEncoding::Utf8));
        assert!(matches!(d.text, Cow::Borrowed(_)));
        let d = decode("\u{feff}caf\u{e9}".as_bytes()).unwrap();
        assert_eq!(
            (d.text.as_ref(), d.encoding),
            ("caf\u{e9}", TextEncoding::Utf8Bom)
        );
        for be in [false, true] {
            let bytes = utf16("a\u{2013}\u{1F600}b", be);
            let d = decode(&bytes).unwrap();
            assert_eq!(d.text, "a\u{2013}\u{1F600}b");
            assert!(d.encoding.is_utf16());
        }
    }

    #[test]
    fn reports_where_decoding_fails() {
        let e = decode(b"ok\n\xC3(").unwrap_err();
        assert_eq!((e.offset, e.encoding), (3, TextEncoding::Utf8));
        let e = decode(b"\xFF\xFEa\x00b").unwrap_err();
        assert!(e.reason.contains("odd"));
        // A lone high surrogate followed by an ordinary character.
        let e = decode(b"\xFF\xFEa\x00\x00\xD8b\x00").unwrap_err();
        assert_eq!(e.offset, 4);
        // A lone low surrogate, and a high surrogate that ends the file (big-endian).
        let e = decode(b"\xFF\xFEa\x00b\x00\x00\xDC").unwrap_err();
        assert_eq!(e.offset, 6);
        let e = decode(b"\xFE\xFF\x00a\xD8\x00").unwrap_err();
        assert_eq!(e.offset, 4);
        // Every kind of unit, both byte orders, as the standard library decodes them.
        let text = "ascii \u{e9}\u{2013}\u{FFFD}\u{10000}\u{1F600}\u{10FFFF}\r\nend";
        for be in [false, true] {
            assert_eq!(decode(&utf16(text, be)).unwrap().text, text);
        }
    }

    #[test]
    fn flags() {
        assert_eq!(crlf("a\nb\r\nc\r\n"), Some((3, 2)));
        assert_eq!(crlf("a\nb\n"), None);
        assert_eq!(first_non_ascii("ab\u{2013}"), Some(2));
        assert_eq!(first_non_ascii("abc"), None);
        assert_eq!(nul("a\0b\0"), Some((1, 2)));
        assert!(looks_binary(b"MZ\x90\x00"));
        assert!(!looks_binary(&utf16("x", false)));
    }
}
