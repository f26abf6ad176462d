//! The build information the Go linker embeds in every executable (`go version -m` prints it):
//! the toolchain's version and the modules linked in.
//!
//! It is in the `.go.buildinfo` section, at a 16-byte boundary: a 32-byte header (the magic
//! `\xff Go buildinf:`, the pointer size, a flags byte), then, since Go 1.18 (flag bit 2), two
//! strings inline, each a uvarint length and its bytes: the version (`go1.22.3`) and the module
//! information between two 16-byte sentinels, one line per module (tabs shown as spaces):
//!
//! ```text
//! path example.com/cmd/app
//! mod example.com/cmd v1.4.0 h1:...
//! dep golang.org/x/net v0.17.0 h1:...
//! dep example.com/old v1.0.0
//! => example.com/new v1.2.3 h1:...      (replaces the line above: its code is what is linked)
//! build -compiler=gc
//! ```
//!
//! Before Go 1.18 the header held two pointers into the data segment instead; such binaries
//! are reported ([`Parsed::PointerFormat`]) and not read. Every length is checked against the
//! section's bytes: a length past the end, a varint of more than ten bytes, bytes that are not
//! UTF-8 or control characters in a field make the whole build information refused.

/// `\xff Go buildinf:`, the 14 bytes that open the header.
pub const MAGIC: &[u8; 14] = b"\xff Go buildinf:";
const HEADER: usize = 32;
const ALIGN: usize = 16;
/// Go searches the first 64 KiB of the section for the header; so does this.
const SEARCH: usize = 64 << 10;
const FLAG_INLINE: u8 = 2;

/// A module linked into a binary, as its build information names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Module {
    pub path: String,
    /// `v1.2.3`; `(devel)` or empty for a main module built from a checkout, empty for a
    /// replacement by a local directory.
    pub version: String,
}

/// The build information of one binary.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BuildInfo {
    /// The toolchain that built it, as Go writes it (`go1.22.3`, `go1.21rc2`, `go1.22.3 X:boringcrypto`).
    pub go_version: String,
    pub main: Option<Module>,
    /// Each dependency with any replacement applied: the module whose code is linked in.
    pub deps: Vec<Module>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    Modern(BuildInfo),
    /// Go before 1.18: the header points into the data segment (not read here).
    PointerFormat,
}

/// Reads the build information from the bytes of a `.go.buildinfo` section; `Ok(None)` when the
/// section holds no header.
pub fn parse_section(section: &[u8]) -> Result<Option<Parsed>, String> {
    let search = &section[..section.len().min(SEARCH)];
    let Some(at) = (0..search.len()).step_by(ALIGN).find(|&k| search[k..].starts_with(MAGIC)) else {
        return Ok(None);
    };
    let header = section.get(at..at + HEADER).ok_or("the build information header is cut short")?;
    if header[15] & FLAG_INLINE == 0 {
        return Ok(Some(Parsed::PointerFormat));
    }
    let mut rest = &section[at + HEADER..];
    let version = string(&mut rest).map_err(|e| format!("the Go version: {e}"))?;
    let modinfo = string(&mut rest).map_err(|e| format!("the module information: {e}"))?;
    let version = std::str::from_utf8(version).map_err(|_| "the Go version is not UTF-8")?;
    if version.is_empty() || version.chars().any(char::is_control) {
        return Err("the Go version is empty or holds control characters".into());
    }
    let mut info = BuildInfo { go_version: version.to_owned(), ..BuildInfo::default() };
    // The linker wraps the text in two 16-byte sentinels, the second after its last newline.
    if modinfo.len() >= 33 && modinfo[modinfo.len() - 17] == b'\n' {
        let text =
            std::str::from_utf8(&modinfo[16..modinfo.len() - 16]).map_err(|_| "the module information is not UTF-8")?;
        modules(text, &mut info)?;
    }
    Ok(Some(Parsed::Modern(info)))
}

/// A uvarint-prefixed string at the start of `rest`, which then moves past it.
fn string<'a>(rest: &mut &'a [u8]) -> Result<&'a [u8], String> {
    let (mut len, mut shift, mut used) = (0u64, 0u32, 0usize);
    loop {
        let b = *rest.get(used).ok_or("the length is cut short")?;
        used += 1;
        if used > 10 || (shift == 63 && b > 1) {
            return Err("the length overflows 64 bits".into());
        }
        len |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            break;
        }
        shift += 7;
    }
    let bytes = usize::try_from(len)
        .ok()
        .and_then(|n| rest.get(used..used.checked_add(n)?))
        .ok_or_else(|| format!("a length of {len} bytes runs past the {} left", rest.len() - used))?;
    *rest = &rest[used + bytes.len()..];
    Ok(bytes)
}

/// The `mod`, `dep` and `=>` lines of the module information.
fn modules(text: &str, info: &mut BuildInfo) -> Result<(), String> {
    for (n, line) in text.lines().enumerate() {
        let mut fields = line.split('\t');
        let kind = fields.next().unwrap_or("");
        if !matches!(kind, "mod" | "dep" | "=>") {
            continue;
        }
        let path = fields.next().unwrap_or("");
        let version = fields.next().unwrap_or("");
        if path.is_empty() || [path, version].iter().any(|f| f.chars().any(|c| c.is_control() || c == ' ')) {
            return Err(format!("line {} of the module information: a bad module path or version", n + 1));
        }
        let module = Module { path: path.to_owned(), version: version.to_owned() };
        match kind {
            "mod" => info.main = Some(module),
            "dep" => info.deps.push(module),
            _ => match info.deps.last_mut().or(info.main.as_mut()) {
                Some(replaced) => *replaced = module,
                None => return Err(format!("line {} of the module information: a replacement of nothing", n + 1)),
            },
        }
    }
    Ok(())
}

/// The Go toolchain's version as the semantic version OSV's `stdlib` records use (as
/// govulncheck converts it): `go1.22.3` is `1.22.3`, `go1.22` is `1.22.0`, `go1.21rc2` is
/// `1.21.0-rc.2`; anything after a space (`X:boringcrypto`) is not part of it. `None` for a
/// development toolchain (`devel go1.23-abc`) or anything else.
pub fn toolchain_semver(go_version: &str) -> Option<String> {
    let tag = go_version.split(' ').next()?;
    let rest = tag.strip_prefix("go")?;
    if rest == "1" {
        return Some("1.0.0".into());
    }
    let split = rest.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(rest.len());
    let (nums, pre) = rest.split_at(split);
    let nums: Vec<&str> = nums.split('.').collect();
    let number = |s: &str| !s.is_empty() && s.len() <= 9 && s.bytes().all(|b| b.is_ascii_digit());
    if !(2..=3).contains(&nums.len()) || !nums.iter().all(|n| number(n)) {
        return None;
    }
    let patch = nums.get(2).copied().unwrap_or("0");
    let mut out = format!("{}.{}.{patch}", nums[0], nums[1]);
    if !pre.is_empty() {
        let kind_len = pre.find(|c: char| c.is_ascii_digit())?;
        let (kind, n) = pre.split_at(kind_len);
        if !matches!(kind, "alpha" | "beta" | "rc") || !number(n) || nums.len() == 3 {
            return None;
        }
        out.push_str(&format!("-{kind}.{n}"));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut n: u64, out: &mut Vec<u8>) {
        while n >= 0x80 {
            out.push((n as u8) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
    }

    /// A section as the Go 1.18+ linker lays it out.
    fn section(version: &str, modinfo: &str) -> Vec<u8> {
        let mut s = MAGIC.to_vec();
        s.extend([8, FLAG_INLINE]);
        s.resize(HEADER, 0);
        varint(version.len() as u64, &mut s);
        s.extend(version.as_bytes());
        let wrapped = format!("0123456789abcdef{modinfo}0123456789abcdef");
        varint(wrapped.len() as u64, &mut s);
        s.extend(wrapped.as_bytes());
        s
    }

    #[test]
    fn modules_and_replacements_are_read() {
        let info = "path\texample.com/app\nmod\texample.com/app\t(devel)\t\n\
                    dep\tgolang.org/x/net\tv0.17.0\th1:x=\n\
                    dep\texample.com/old\tv1.0.0\n=>\texample.com/new\tv1.2.3\th1:y=\n\
                    dep\texample.com/local\tv0.1.0\n=>\t../local\t\t\nbuild\t-compiler=gc\n";
        let Some(Parsed::Modern(b)) = parse_section(&section("go1.22.3", info)).unwrap() else { panic!() };
        assert_eq!(b.go_version, "go1.22.3");
        assert_eq!(b.main, Some(Module { path: "example.com/app".into(), version: "(devel)".into() }));
        let deps: Vec<_> = b.deps.iter().map(|m| (m.path.as_str(), m.version.as_str())).collect();
        assert_eq!(deps, [("golang.org/x/net", "v0.17.0"), ("example.com/new", "v1.2.3"), ("../local", "")]);
    }

    #[test]
    fn the_header_is_found_at_a_16_byte_boundary_only() {
        let mut s = vec![0u8; 48];
        s.extend(section("go1.21.0", "mod\tm\tv1.0.0\t\n"));
        assert!(matches!(parse_section(&s), Ok(Some(Parsed::Modern(_)))));
        let mut s = vec![0u8; 8];
        s.extend(section("go1.21.0", ""));
        assert_eq!(parse_section(&s), Ok(None));
        assert_eq!(parse_section(b""), Ok(None));
    }

    #[test]
    fn hostile_sections_are_refused_not_overrun() {
        let good = section("go1.22.3", "dep\ta\tv1.0.0\t\n");
        // Every truncation: an error or nothing, never a panic.
        for n in 0..good.len() {
            let _ = parse_section(&good[..n]);
        }
        assert!(parse_section(&good[..20]).is_err(), "a header cut short");
        // Old pointer format.
        let mut old = MAGIC.to_vec();
        old.extend([8, 0]);
        old.resize(64, 0);
        assert_eq!(parse_section(&old), Ok(Some(Parsed::PointerFormat)));
        // A length past the end, a huge varint, an overlong varint.
        let mut s = section("go1.22.3", "");
        s.truncate(HEADER);
        let mut past = s.clone();
        past.extend([0x7f, b'g']);
        assert!(parse_section(&past).unwrap_err().contains("runs past"));
        let mut huge = s.clone();
        huge.extend([0xff; 9]);
        huge.push(0x01);
        assert!(parse_section(&huge).is_err());
        let mut overflow = s.clone();
        overflow.extend([0xff; 9]);
        overflow.push(0x7f);
        assert!(parse_section(&overflow).unwrap_err().contains("overflows"));
        let mut long = s.clone();
        long.extend([0x80; 11]);
        assert!(parse_section(&long).is_err());
        // Bytes that are not UTF-8, control characters.
        let mut bad = s.clone();
        bad.extend([2, 0xff, 0xfe, 0]);
        assert!(parse_section(&bad).unwrap_err().contains("UTF-8"));
        assert!(parse_section(&section("go1.22\u{1b}[31m", "")).is_err());
        assert!(parse_section(&section("go1.22.3", "dep\tbad\u{7}name\tv1.0.0\t\n")).is_err());
        assert!(parse_section(&section("go1.22.3", "=>\tx\tv1.0.0\t\n")).unwrap_err().contains("replacement"));
        let mut not_utf8 = section("go1.22.3", "dep\tx\tv1.0.0\t\n");
        let k = not_utf8.len() - 20;
        not_utf8[k] = 0xff;
        assert!(parse_section(&not_utf8).unwrap_err().contains("UTF-8"));
    }

    #[test]
    fn toolchain_versions_convert_as_govulncheck_does() {
        for (go, want) in [
            ("go1.22.3", Some("1.22.3")),
            ("go1.22", Some("1.22.0")),
            ("go1.21rc2", Some("1.21.0-rc.2")),
            ("go1.19beta1", Some("1.19.0-beta.1")),
            ("go1", Some("1.0.0")),
            ("go1.22.3 X:boringcrypto", Some("1.22.3")),
            ("devel go1.23-abc", None),
            ("go1.22.3rc1", None),
            ("go1.x", None),
            ("go1.22.3.4", None),
            ("go1.21gamma1", None),
            ("1.22.3", None),
            ("", None),
        ] {
            assert_eq!(toolchain_semver(go).as_deref(), want, "{go}");
        }
    }
}
