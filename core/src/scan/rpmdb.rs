//! The rpm database in its SQLite form (rpm 4.16 and later: Fedora 33+, RHEL/Rocky/Alma 9+):
//! table `Packages (hnum, blob)`, each blob one package's header; and in its Berkeley DB form.
//!
//! A header (rpm's `headerImport` layout, without the 8-byte magic) is two big-endian `u32`
//! counts, `il` index entries and `dl` bytes of data, then `il` entries of
//! `(tag, type, offset, count)` and the data they point into. Every offset is checked against
//! the data's length before it is used: a blob is untrusted bytes.
//!
//! The Berkeley DB form (`Packages`, RHEL/CentOS 7 and 8) holds the same headers as the values
//! of a hash database ([`super::bdb`]). The ndb form (`Packages.db`, SUSE) is not read: an image
//! with one fails the inventory, naming the file, rather than look empty.

use std::os::fd::AsRawFd as _;

use rusqlite::{Connection, OpenFlags};

use super::rootfs::RootFs;
use crate::diag::Diagnostic;

const SQLITE_DBS: [&str; 2] = ["usr/lib/sysimage/rpm/rpmdb.sqlite", "var/lib/rpm/rpmdb.sqlite"];
const BDB_DBS: [&str; 2] = ["var/lib/rpm/Packages", "usr/lib/sysimage/rpm/Packages"];
const NDB_DBS: [&str; 2] = ["var/lib/rpm/Packages.db", "usr/lib/sysimage/rpm/Packages.db"];
/// The most read of a Berkeley DB database, as of every package database (`inventory::DB_MAX`).
const BDB_MAX: u64 = 256 << 20;

const TAG_NAME: u32 = 1000;
const TAG_VERSION: u32 = 1001;
const TAG_RELEASE: u32 = 1002;
const TAG_EPOCH: u32 = 1003;
const TAG_ARCH: u32 = 1022;
const TAG_SOURCERPM: u32 = 1044;
const TYPE_INT32: u32 = 4;
const TYPE_STRING: u32 = 6;
/// More entries or data than any real header has: a blob claiming more is refused.
const MAX_ENTRIES: usize = 1 << 16;

/// The fields of one header that an inventory needs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub version: String,
    pub release: String,
    pub epoch: Option<u32>,
    pub arch: Option<String>,
    pub source_rpm: Option<String>,
}

/// Reads one header blob.
pub fn parse_header(blob: &[u8]) -> Result<Header, String> {
    let u32_at =
        |at: usize| -> Option<u32> { blob.get(at..at + 4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]])) };
    let il = u32_at(0).ok_or("shorter than a header")? as usize;
    let dl = u32_at(4).ok_or("shorter than a header")? as usize;
    if il > MAX_ENTRIES {
        return Err(format!("claims {il} index entries"));
    }
    let data_start = 8 + il * 16;
    let data = blob
        .get(data_start..data_start.checked_add(dl).ok_or("bad data length")?)
        .ok_or_else(|| format!("claims {il} entries and {dl} bytes of data, more than its {} bytes", blob.len()))?;
    let mut h = Header::default();
    for k in 0..il {
        let e = 8 + k * 16;
        let (Some(tag), Some(ty), Some(off), Some(count)) = (u32_at(e), u32_at(e + 4), u32_at(e + 8), u32_at(e + 12))
        else {
            return Err("truncated index".into());
        };
        let off = off as usize;
        let string = || -> Result<String, String> {
            if ty != TYPE_STRING {
                return Err(format!("tag {tag} has type {ty}, not a string"));
            }
            let rest = data.get(off..).ok_or_else(|| format!("tag {tag} points past the data"))?;
            let end = rest.iter().position(|&b| b == 0).ok_or_else(|| format!("tag {tag}: string without its end"))?;
            let s = std::str::from_utf8(&rest[..end]).map_err(|_| format!("tag {tag} is not UTF-8"))?;
            if s.chars().any(char::is_control) {
                return Err(format!("tag {tag} holds control characters"));
            }
            Ok(s.to_owned())
        };
        match tag {
            TAG_NAME => h.name = string()?,
            TAG_VERSION => h.version = string()?,
            TAG_RELEASE => h.release = string()?,
            TAG_ARCH => h.arch = Some(string()?),
            TAG_SOURCERPM => h.source_rpm = Some(string()?),
            TAG_EPOCH => {
                if ty != TYPE_INT32 || count < 1 {
                    return Err(format!("the epoch has type {ty}, not int32"));
                }
                let b = data.get(off..off + 4).ok_or("the epoch points past the data")?;
                h.epoch = Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
            }
            _ => {}
        }
    }
    if h.name.is_empty() || h.version.is_empty() {
        return Err("no name or version".into());
    }
    Ok(h)
}

/// The package name of a source rpm file name (`bash-5.1.8-6.el9.src.rpm` -> `bash`).
pub fn source_name(srpm: &str) -> Option<&str> {
    let base = srpm.strip_suffix(".src.rpm").or_else(|| srpm.strip_suffix(".nosrc.rpm"))?;
    let (rest, _release) = base.rsplit_once('-')?;
    let (name, _version) = rest.rsplit_once('-')?;
    (!name.is_empty()).then_some(name)
}

/// One installed rpm: what an inventory keeps of its header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Installed {
    pub name: String,
    /// `[epoch:]version-release`.
    pub evr: String,
    pub arch: Option<String>,
    /// The source package's name, when it is not the package's own.
    pub source: Option<String>,
    /// The database file, inside the image.
    pub location: &'static str,
}

/// The packages of the image's rpm database, if it has one.
pub fn installed(root: &RootFs) -> Result<Vec<Installed>, Diagnostic> {
    let mut found = None;
    for rel in SQLITE_DBS {
        if let Some(file) = root.open_regular(rel)? {
            found = Some((rel, file));
            break;
        }
    }
    let Some((rel, file)) = found else {
        for rel in BDB_DBS {
            if let Some(bytes) = root.read(rel, BDB_MAX)? {
                return berkeley(root, rel, &bytes);
            }
        }
        for rel in NDB_DBS {
            if root.open_regular(rel)?.is_some() {
                return Err(root.error(
                    rel,
                    "is an rpm database in ndb format, which is not read (only rpmdb.sqlite and Berkeley DB Packages): refused rather than report no packages",
                ));
            }
        }
        return Ok(Vec::new());
    };
    // SQLite opens the file checked by open_regular through its descriptor; immutable: no
    // locks, no journal, nothing written.
    let uri = format!("file:/proc/self/fd/{}?immutable=1", file.as_raw_fd());
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let sql_err = |e: rusqlite::Error| root.error(rel, format!("cannot read the rpm database: {e}"));
    let db = Connection::open_with_flags(&uri, flags).map_err(sql_err)?;
    let mut stmt = db.prepare("SELECT hnum, blob FROM Packages ORDER BY hnum").map_err(sql_err)?;
    let mut rows = stmt.query([]).map_err(sql_err)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(sql_err)? {
        let hnum: i64 = row.get(0).map_err(sql_err)?;
        let blob: Vec<u8> = row.get(1).map_err(sql_err)?;
        let h = parse_header(&blob).map_err(|e| root.error(rel, format!("package header {hnum}: {e}")))?;
        out.extend(package(h, rel));
    }
    Ok(out)
}

/// What an inventory keeps of a header; `None` for an imported signing key (a header too, not
/// a package).
fn package(h: Header, rel: &'static str) -> Option<Installed> {
    if h.name == "gpg-pubkey" {
        return None;
    }
    let evr = match h.epoch {
        Some(e) => format!("{e}:{}-{}", h.version, h.release),
        None => format!("{}-{}", h.version, h.release),
    };
    let source = h.source_rpm.as_deref().and_then(source_name).filter(|s| *s != h.name).map(str::to_owned);
    Some(Installed { name: h.name, evr, arch: h.arch, source, location: rel })
}

/// The packages of a Berkeley DB `Packages` database: each value is a header, its key the
/// header's number (key 0, all zero bytes, holds rpm's next number, not a header).
fn berkeley(root: &RootFs, rel: &'static str, bytes: &[u8]) -> Result<Vec<Installed>, Diagnostic> {
    let pairs = super::bdb::pairs(bytes).map_err(|e| root.error(rel, format!("cannot read the rpm database: {e}")))?;
    let mut out = Vec::new();
    for (key, value) in pairs {
        if key.iter().all(|&b| b == 0) {
            continue;
        }
        let number = key.iter().map(|b| format!("{b:02x}")).collect::<String>();
        let h = parse_header(&value).map_err(|e| root.error(rel, format!("package header (key {number}): {e}")))?;
        out.extend(package(h, rel));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(entries: &[(u32, u32, &[u8])]) -> Vec<u8> {
        let mut index = Vec::new();
        let mut data = Vec::new();
        for (tag, ty, bytes) in entries {
            for v in [*tag, *ty, data.len() as u32, 1] {
                index.extend_from_slice(&v.to_be_bytes());
            }
            data.extend_from_slice(bytes);
        }
        let mut out = Vec::new();
        out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend(index);
        out.extend(data);
        out
    }

    #[test]
    fn a_header_is_read_and_hostile_ones_are_refused() {
        let good = header(&[
            (TAG_NAME, TYPE_STRING, b"bash\0"),
            (TAG_VERSION, TYPE_STRING, b"5.1.8\0"),
            (TAG_RELEASE, TYPE_STRING, b"6.el9\0"),
            (TAG_EPOCH, TYPE_INT32, &1u32.to_be_bytes()),
        ]);
        let h = parse_header(&good).expect("parses");
        assert_eq!(
            (h.name.as_str(), h.version.as_str(), h.release.as_str(), h.epoch),
            ("bash", "5.1.8", "6.el9", Some(1))
        );
        // Every truncation is refused, never a panic.
        for n in 0..good.len() {
            assert!(parse_header(&good[..n]).is_err(), "{n} bytes accepted");
        }
        let mut huge = good.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(parse_header(&huge).is_err());
        let past = header(&[(TAG_NAME, TYPE_STRING, b"x\0")]);
        let mut past = past;
        past[16..20].copy_from_slice(&1000u32.to_be_bytes());
        assert!(parse_header(&past).is_err());
        assert!(parse_header(&header(&[(TAG_NAME, TYPE_STRING, b"no-end")])).is_err());
        assert!(
            parse_header(&header(&[(TAG_NAME, TYPE_STRING, b"a\nb\0"), (TAG_VERSION, TYPE_STRING, b"1\0")])).is_err()
        );
    }

    #[test]
    fn source_rpm_names() {
        assert_eq!(source_name("bash-5.1.8-6.el9.src.rpm"), Some("bash"));
        assert_eq!(source_name("python3.11-pip-22.3.1-4.el9.src.rpm"), Some("python3.11-pip"));
        assert_eq!(source_name("junk"), None);
    }
}
