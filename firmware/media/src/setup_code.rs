//! The first-start setup code: its symbols, its canonical form and the
//! file the SD image carries it in. Pure, like the rest of this crate, and
//! here because two programs must agree on it: `roomcast-host image build`
//! writes the code, the daemon reads it. Randomness is passed in.

use alloc::string::String;
use alloc::vec::Vec;

/// The code's file on the SD image's boot partition (`/boot/firmware` on
/// the box).
pub const FILE_NAME: &str = "roomcast-setup-code.txt";

/// The symbols: digits and capitals without 0, O, 1 and I, so that a code
/// read off a terminal or a file can be typed back without guessing. 32
/// symbols: 5 bits each.
pub const ALPHABET: &[u8; 32] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZ";
/// Symbols in a code, shown in groups of four (`XXXX-XXXX-XXXX-XXXX`):
/// 16 × 5 = 80 bits. The daemon slows down wrong guesses like wrong
/// passwords; even a million guesses a second would take about 2^79 / 10^6
/// s ≈ 19 billion years on average.
pub const LEN: usize = 16;

/// A code from `LEN` random bytes (256 is a multiple of 32: every symbol
/// equally likely).
pub fn from_random(random: &[u8; LEN]) -> String {
    let symbols: Vec<u8> = random
        .iter()
        .map(|x| ALPHABET[usize::from(x % 32)])
        .collect();
    grouped(&symbols)
}

fn grouped(symbols: &[u8]) -> String {
    let mut out = String::with_capacity(LEN + LEN / 4);
    for (i, c) in symbols.iter().enumerate() {
        if i > 0 && i % 4 == 0 {
            out.push('-');
        }
        out.push(char::from(*c));
    }
    out
}

/// A code as typed (any case, with or without dashes and spaces) in its
/// canonical form, or `None` when it cannot be one.
pub fn normalize(typed: &str) -> Option<String> {
    let symbols: Vec<u8> = typed
        .bytes()
        .filter(|b| !matches!(b, b'-' | b' ' | b'\t'))
        .map(|b| b.to_ascii_uppercase())
        .collect();
    (symbols.len() == LEN && symbols.iter().all(|b| ALPHABET.contains(b)))
        .then(|| grouped(&symbols))
}

/// The code in a setup code file: the first line that is neither empty nor
/// a `#` comment (a byte-order mark and CRLF tolerated), canonical.
pub fn parse_file(text: &str) -> Option<String> {
    text.trim_start_matches('\u{feff}')
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .and_then(normalize)
}

/// `roomcast-setup-code.txt` on the boot partition: comments for whoever
/// opens the card, then the code.
pub fn file_text(code: &str) -> String {
    alloc::format!(
        "# roomcast setup code\n\
         #\n\
         # On first start the box's web page (http://roomcast-XXXX.local:8080/)\n\
         # sets the admin password only with this code. It works once: the box\n\
         # forgets it when the password is set (a reset prints a new one in the\n\
         # box's log).\n\
         {code}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_grouped_typable_and_read_back_leniently() {
        let random: [u8; LEN] = core::array::from_fn(|i| (i * 37 + 5) as u8);
        let a = from_random(&random);
        assert_eq!(a, "7CHN-TY5A-FLRW-38DJ");
        for c in b"01IO" {
            assert!(!ALPHABET.contains(c));
        }
        let mut sorted = ALPHABET.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 32);
        let want = Some(String::from("ABCD-EFGH-JKLM-NP23"));
        for typed in [
            "ABCD-EFGH-JKLM-NP23",
            "abcd-efgh-jklm-np23",
            " abcdefghjklmnp23 ",
            "ABCD EFGH JKLM NP23",
        ] {
            assert_eq!(normalize(typed), want, "{typed:?}");
        }
        for bad in [
            "",
            "ABCD-EFGH-JKLM-NP2",
            "ABCD-EFGH-JKLM-NP20",
            "ABCD-EFGH-JKLM-NP2I",
        ] {
            assert_eq!(normalize(bad), None, "{bad:?}");
        }
        let file = file_text(&a);
        assert!(
            file.starts_with("# roomcast setup code\n")
                && file.ends_with(&alloc::format!("\n{a}\n"))
        );
        assert_eq!(parse_file(&file), Some(a.clone()));
        let edited = alloc::format!("\u{feff}{}", file.replace('\n', "\r\n").to_lowercase());
        assert_eq!(parse_file(&edited), Some(a));
        assert_eq!(parse_file("# comments only\n"), None);
    }
}
