//! Just enough of ELF to find a named section of an executable without reading the rest: the
//! file header, the section header table and the section names, each read where the header
//! says and each checked against the file's length first. 32- and 64-bit, both byte orders.
//!
//! What an image's executable claims is untrusted: a count or an offset past the end, a table
//! larger than [`TABLE_MAX`], a section larger than the caller's cap, is an error, never a
//! large allocation or a read past the file.

use std::fs::File;
use std::os::unix::fs::FileExt as _;

/// The most read of a section header table or of the section names: real ones are a few KiB.
pub const TABLE_MAX: u64 = 1 << 20;
const SHT_NOBITS: u32 = 8;

/// Whether `head` (the first bytes of a file) starts as an ELF file does.
pub fn is_elf(head: &[u8]) -> bool {
    head.starts_with(b"\x7fELF")
}

/// One section's place in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section {
    pub name: String,
    pub offset: u64,
    pub size: u64,
}

/// Reads `len` bytes at `offset` of `file`, which is `file_len` long, checking the range first.
pub fn read_at(file: &File, file_len: u64, offset: u64, len: u64) -> Result<Vec<u8>, String> {
    let end = offset.checked_add(len).ok_or("an offset past any file")?;
    if end > file_len {
        return Err(format!("bytes {offset}..{end} lie past the end of the file ({file_len} bytes)"));
    }
    let mut buf = vec![0; usize::try_from(len).map_err(|_| "a length past any file")?];
    file.read_exact_at(&mut buf, offset).map_err(|e| format!("cannot read bytes {offset}..{end}: {e}"))?;
    Ok(buf)
}

struct Reader<'a> {
    b: &'a [u8],
    big: bool,
}

impl Reader<'_> {
    fn u16(&self, at: usize) -> Option<u64> {
        let b: [u8; 2] = self.b.get(at..at + 2)?.try_into().ok()?;
        Some(if self.big { u16::from_be_bytes(b) } else { u16::from_le_bytes(b) }.into())
    }
    fn u32(&self, at: usize) -> Option<u64> {
        let b: [u8; 4] = self.b.get(at..at + 4)?.try_into().ok()?;
        Some(if self.big { u32::from_be_bytes(b) } else { u32::from_le_bytes(b) }.into())
    }
    fn u64(&self, at: usize) -> Option<u64> {
        let b: [u8; 8] = self.b.get(at..at + 8)?.try_into().ok()?;
        Some(if self.big { u64::from_be_bytes(b) } else { u64::from_le_bytes(b) })
    }
    /// An address-sized field: 4 bytes in a 32-bit file, 8 in a 64-bit one.
    fn addr(&self, wide: bool, at: usize) -> Option<u64> {
        if wide {
            self.u64(at)
        } else {
            self.u32(at)
        }
    }
}

/// The sections of the ELF file `file` (`file_len` bytes), from its section header table. A
/// file without a table (none, or the extended numbering no real executable uses) has none.
pub fn sections(file: &File, file_len: u64) -> Result<Vec<Section>, String> {
    let head = read_at(file, file_len, 0, 64.min(file_len))?;
    if !is_elf(&head) || head.len() < 52 {
        return Err("not an ELF file".into());
    }
    let wide = match head[4] {
        1 => false,
        2 => true,
        c => return Err(format!("ELF class {c} is neither 32- nor 64-bit")),
    };
    let big = match head[5] {
        1 => false,
        2 => true,
        d => return Err(format!("ELF data encoding {d} is neither little- nor big-endian")),
    };
    let h = Reader { b: &head, big };
    let field = |w: usize, n: usize| if wide { w } else { n };
    let shoff = h.addr(wide, field(0x28, 0x20)).ok_or("truncated ELF header")?;
    let entsize = h.u16(field(0x3a, 0x2e)).ok_or("truncated ELF header")?;
    let shnum = h.u16(field(0x3c, 0x30)).ok_or("truncated ELF header")?;
    let shstrndx = h.u16(field(0x3e, 0x32)).ok_or("truncated ELF header")?;
    if shoff == 0 || shnum == 0 {
        return Ok(Vec::new());
    }
    let min_entsize = if wide { 64 } else { 40 };
    if entsize < min_entsize {
        return Err(format!("section headers of {entsize} bytes, fewer than the {min_entsize} of one"));
    }
    if shstrndx >= shnum {
        return Err(format!("the section names are in section {shstrndx} of {shnum}"));
    }
    let table_len = entsize * shnum;
    if table_len > TABLE_MAX {
        return Err(format!("a section header table of {table_len} bytes, more than the {TABLE_MAX} read"));
    }
    let table = read_at(file, file_len, shoff, table_len)?;
    let t = Reader { b: &table, big };
    // (name offset, type, file offset, size) of section k.
    let entry = |k: u64| -> Option<(u64, u64, u64, u64)> {
        let e = usize::try_from(k * entsize).ok()?;
        Some((t.u32(e)?, t.u32(e + 4)?, t.addr(wide, e + field(0x18, 0x10))?, t.addr(wide, e + field(0x20, 0x14))?))
    };
    let (_, _, names_off, names_len) = entry(shstrndx).ok_or("truncated section header table")?;
    if names_len > TABLE_MAX {
        return Err(format!("section names of {names_len} bytes, more than the {TABLE_MAX} read"));
    }
    let names = read_at(file, file_len, names_off, names_len)?;
    let mut out = Vec::new();
    for k in 0..shnum {
        let (name, ty, offset, size) = entry(k).ok_or("truncated section header table")?;
        if ty == u64::from(SHT_NOBITS) {
            continue;
        }
        let Some(rest) = usize::try_from(name).ok().and_then(|n| names.get(n..)) else { continue };
        let Some(end) = rest.iter().position(|&b| b == 0) else { continue };
        let Ok(name) = std::str::from_utf8(&rest[..end]) else { continue };
        out.push(Section { name: name.to_owned(), offset, size });
    }
    Ok(out)
}

/// The bytes of section `s`, when it is at most `cap` bytes.
pub fn read_section(file: &File, file_len: u64, s: &Section, cap: u64) -> Result<Vec<u8>, String> {
    if s.size > cap {
        return Err(format!("section {} is {} bytes, more than the {cap} read", s.name, s.size));
    }
    read_at(file, file_len, s.offset, s.size).map_err(|e| format!("section {}: {e}", s.name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    /// A 64-bit little-endian header whose section table is at `shoff`, `shnum` entries of
    /// `entsize` bytes, names in section `shstrndx`, followed by `rest`.
    fn file(shoff: u64, entsize: u16, shnum: u16, shstrndx: u16, rest: &[u8]) -> (tempfile::NamedTempFile, u64) {
        let mut h = vec![0u8; 64];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = 2;
        h[5] = 1;
        h[0x28..0x30].copy_from_slice(&shoff.to_le_bytes());
        h[0x3a..0x3c].copy_from_slice(&entsize.to_le_bytes());
        h[0x3c..0x3e].copy_from_slice(&shnum.to_le_bytes());
        h[0x3e..0x40].copy_from_slice(&shstrndx.to_le_bytes());
        h.extend(rest);
        let mut f = tempfile::NamedTempFile::new().expect("tmp");
        f.write_all(&h).expect("write");
        let len = h.len() as u64;
        (f, len)
    }

    fn err(shoff: u64, entsize: u16, shnum: u16, shstrndx: u16, rest: &[u8]) -> String {
        let (f, len) = file(shoff, entsize, shnum, shstrndx, rest);
        sections(f.as_file(), len).expect_err("refused")
    }

    #[test]
    fn hostile_headers_are_refused_before_any_large_read() {
        assert!(err(64, 8, 1, 0, &[]).contains("fewer than"));
        assert!(err(64, 64, 2, 2, &[]).contains("section 2 of 2"));
        assert!(err(64, 64, 65535, 0, &[]).contains("more than"));
        assert!(err(u64::MAX - 8, 64, 1, 0, &[]).contains("past"));
        assert!(err(64, 64, 1, 0, &[0; 10]).contains("past the end"));
        // A names section claiming 2^63 bytes at an offset past the end.
        let mut entry = vec![0u8; 64];
        entry[0x18..0x20].copy_from_slice(&(1u64 << 62).to_le_bytes());
        entry[0x20..0x28].copy_from_slice(&(1u64 << 63).to_le_bytes());
        assert!(err(64, 64, 1, 0, &entry).contains("more than"));
        entry[0x20..0x28].copy_from_slice(&16u64.to_le_bytes());
        assert!(err(64, 64, 1, 0, &entry).contains("past the end"));
        // No table at all: no sections, no error.
        let (f, len) = file(0, 64, 0, 0, &[]);
        assert_eq!(sections(f.as_file(), len), Ok(Vec::new()));
        let (f, len) = file(64, 64, 1, 0, &[]);
        let mut h = std::fs::read(f.path()).expect("read");
        h[4] = 3;
        std::fs::write(f.path(), &h).expect("write");
        assert!(sections(f.as_file(), len).unwrap_err().contains("class 3"));
        assert!(!is_elf(b"\x7fEL"));
    }

    #[test]
    fn a_section_larger_than_the_cap_is_not_read() {
        let s = Section { name: ".x".into(), offset: 0, size: 1 << 40 };
        let (f, len) = file(0, 64, 0, 0, &[]);
        assert!(read_section(f.as_file(), len, &s, 1 << 20).unwrap_err().contains("more than"));
    }
}
