//! The values of a Berkeley DB hash database, read-only, from its bytes: what rpm's `Packages`
//! (RHEL/CentOS 7 and 8, Amazon Linux 2) is, one package header per value.
//!
//! A file is pages of one size. Page 0 is the metadata (magic `0x061561` at byte 12, in the
//! byte order the database was written in, which is how that order is found; page size at 20;
//! type 8 at 25; the last page number at 32). Every other page starts with a 26-byte header
//! (`pgno`, `prev`, `next` at 8/12/16, the entry count at 20, `hf_offset` at 22, the type at
//! 25). A hash page (type 2 or 13) holds an index of 16-bit item offsets after the header,
//! items alternating key and value, each ending where the one before it begins (the first at
//! the page's end). An item is its type byte then its data (`H_KEYDATA`, 1), or a reference to
//! a chain of overflow pages (`H_OFFPAGE`, 3: the first page at +4 and the total length at +8),
//! used for values larger than about a quarter of a page. An overflow page (type 7) holds
//! `hf_offset` bytes after its header and names the next in `next`.
//!
//! Every page is read (the hash buckets are not followed: every value is wanted). Nothing is
//! trusted: a page number past the last page, an item outside its page, a chain that loops or
//! is longer than it said, an encrypted or checksummed database is an error, never a read
//! past the bytes or a loop without end.

const MAGIC_HASH: u32 = 0x061561;
const PAGE_HEADER: usize = 26;
const P_HASH_UNSORTED: u8 = 2;
const P_OVERFLOW: u8 = 7;
const P_HASHMETA: u8 = 8;
const P_HASH: u8 = 13;
const H_KEYDATA: u8 = 1;
const H_OFFPAGE: u8 = 3;

/// One key and its value.
pub type Pair = (Vec<u8>, Vec<u8>);

struct Db<'a> {
    bytes: &'a [u8],
    big: bool,
    page_size: usize,
    last: u32,
}

impl<'a> Db<'a> {
    fn u16(&self, at: usize) -> Option<usize> {
        let b: [u8; 2] = self.bytes.get(at..at + 2)?.try_into().ok()?;
        Some(usize::from(if self.big { u16::from_be_bytes(b) } else { u16::from_le_bytes(b) }))
    }
    fn u32(&self, at: usize) -> Option<u32> {
        let b: [u8; 4] = self.bytes.get(at..at + 4)?.try_into().ok()?;
        Some(if self.big { u32::from_be_bytes(b) } else { u32::from_le_bytes(b) })
    }
    /// Page `n`, checked to be in the file.
    fn page(&self, n: u32) -> Result<&'a [u8], String> {
        if n == 0 || n > self.last {
            return Err(format!("page {n} is out of range (pages 1 to {})", self.last));
        }
        let start = n as usize * self.page_size;
        Ok(&self.bytes[start..start + self.page_size])
    }
    /// The bytes of an overflow chain starting at page `first`, `len` bytes in all.
    fn overflow(&self, first: u32, len: usize) -> Result<Vec<u8>, String> {
        if len > self.bytes.len() {
            return Err(format!("a value of {len} bytes in a file of {}", self.bytes.len()));
        }
        self.page(first)?;
        let mut out = Vec::with_capacity(len);
        let mut next = first;
        let mut pages = 0u32;
        while next != 0 {
            pages += 1;
            if pages > self.last {
                return Err(format!("the overflow chain from page {first} loops"));
            }
            let page = self.page(next)?;
            let at = next as usize * self.page_size;
            if page[25] != P_OVERFLOW {
                return Err(format!("page {next} of an overflow chain has type {}, not 7", page[25]));
            }
            let used = self.u16(at + 22).unwrap_or(0);
            let data = page
                .get(PAGE_HEADER..PAGE_HEADER + used)
                .ok_or_else(|| format!("overflow page {next} claims {used} bytes, more than it holds"))?;
            if out.len() + data.len() > len {
                return Err(format!("the overflow chain from page {first} is longer than its {len} bytes"));
            }
            out.extend_from_slice(data);
            next = self.u32(at + 16).unwrap_or(0);
        }
        if out.len() != len {
            return Err(format!("the overflow chain from page {first} holds {} bytes, not {len}", out.len()));
        }
        Ok(out)
    }
}

/// Every key/value pair of the hash database `bytes`, in page order. Long because it is the
/// one walk over the pages: the metadata checks, then each hash page's items.
pub fn pairs(bytes: &[u8]) -> Result<Vec<Pair>, String> {
    let meta = bytes.get(..72).ok_or("shorter than a Berkeley DB metadata page")?;
    let magic = |big: bool| {
        let b: [u8; 4] = meta[12..16].try_into().unwrap_or_default();
        if big {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    };
    let big = match (magic(false), magic(true)) {
        (MAGIC_HASH, _) => false,
        (_, MAGIC_HASH) => true,
        _ => return Err("not a Berkeley DB hash database (no hash magic)".into()),
    };
    let mut db = Db { bytes, big, page_size: 0, last: 0 };
    let page_size = db.u32(20).unwrap_or(0) as usize;
    if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
        return Err(format!("a page size of {page_size} bytes (Berkeley DB uses 512 to 65536, a power of two)"));
    }
    if meta[25] != P_HASHMETA {
        return Err(format!("the metadata page has type {}, not 8 (hash)", meta[25]));
    }
    if meta[24] != 0 || meta[26] & 1 != 0 {
        return Err("an encrypted or checksummed database, which is not read".into());
    }
    let last = db.u32(32).unwrap_or(0);
    let needed = (u64::from(last) + 1) * page_size as u64;
    if needed > bytes.len() as u64 {
        return Err(format!(
            "{} bytes, fewer than its {} pages of {page_size} bytes",
            bytes.len(),
            u64::from(last) + 1
        ));
    }
    (db.page_size, db.last) = (page_size, last);
    let mut out = Vec::new();
    for n in 1..=last {
        let page = db.page(n)?;
        if !matches!(page[25], P_HASH | P_HASH_UNSORTED) {
            continue;
        }
        let at = n as usize * page_size;
        let entries = db.u16(at + 20).unwrap_or(0);
        if PAGE_HEADER + 2 * entries > page_size || entries % 2 != 0 {
            return Err(format!("hash page {n} claims {entries} items"));
        }
        let item = |i: usize| -> Result<&[u8], String> {
            let start = db.u16(at + PAGE_HEADER + 2 * i).unwrap_or(0);
            let end = if i == 0 { page_size } else { db.u16(at + PAGE_HEADER + 2 * (i - 1)).unwrap_or(0) };
            if start < PAGE_HEADER + 2 * entries || start >= end || end > page_size {
                return Err(format!("item {i} of hash page {n} lies outside its page ({start}..{end})"));
            }
            Ok(&page[start..end])
        };
        let value = |it: &[u8], i: usize| -> Result<Vec<u8>, String> {
            match it[0] {
                H_KEYDATA => Ok(it[1..].to_vec()),
                H_OFFPAGE if it.len() >= 12 => {
                    let d = Db { bytes: it, big, page_size, last };
                    let (first, len) = (d.u32(4).unwrap_or(0), d.u32(8).unwrap_or(0) as usize);
                    db.overflow(first, len).map_err(|e| format!("item {i} of hash page {n}: {e}"))
                }
                t => Err(format!("item {i} of hash page {n} has type {t}, which rpm's database does not use")),
            }
        };
        for i in (0..entries).step_by(2) {
            let key = value(item(i)?, i)?;
            out.push((key, value(item(i + 1)?, i + 1)?));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database of `pages` pages of 512 bytes, little-endian, its metadata filled in.
    fn db(pages: u32) -> Vec<u8> {
        let mut b = vec![0u8; 512 * pages as usize];
        b[12..16].copy_from_slice(&MAGIC_HASH.to_le_bytes());
        b[20..24].copy_from_slice(&512u32.to_le_bytes());
        b[25] = P_HASHMETA;
        b[32..36].copy_from_slice(&(pages - 1).to_le_bytes());
        b
    }

    /// Puts items on page `n` as a hash page, from the page's end down.
    fn hash_page(b: &mut [u8], n: usize, items: &[Vec<u8>]) {
        let at = n * 512;
        b[at + 25] = P_HASH;
        b[at + 20..at + 22].copy_from_slice(&(items.len() as u16).to_le_bytes());
        let mut end = 512;
        for (i, it) in items.iter().enumerate() {
            let start = end - it.len();
            b[at + start..at + end].copy_from_slice(it);
            b[at + PAGE_HEADER + 2 * i..at + PAGE_HEADER + 2 * i + 2].copy_from_slice(&(start as u16).to_le_bytes());
            end = start;
        }
    }

    fn overflow_page(b: &mut [u8], n: usize, data: &[u8], next: u32) {
        let at = n * 512;
        b[at + 25] = P_OVERFLOW;
        b[at + 22..at + 24].copy_from_slice(&(data.len() as u16).to_le_bytes());
        b[at + 16..at + 20].copy_from_slice(&next.to_le_bytes());
        b[at + PAGE_HEADER..at + PAGE_HEADER + data.len()].copy_from_slice(data);
    }

    fn offpage(first: u32, len: u32) -> Vec<u8> {
        let mut v = vec![H_OFFPAGE, 0, 0, 0];
        v.extend(first.to_le_bytes());
        v.extend(len.to_le_bytes());
        v
    }

    #[test]
    fn inline_and_overflow_values_are_read() {
        let mut b = db(4);
        hash_page(
            &mut b,
            1,
            &[vec![H_KEYDATA, 1, 0, 0, 0], vec![H_KEYDATA, b'h', b'i'], vec![H_KEYDATA, 2], offpage(2, 600)],
        );
        overflow_page(&mut b, 2, &[b'a'; 400], 3);
        overflow_page(&mut b, 3, &[b'b'; 200], 0);
        let got = pairs(&b).expect("reads");
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], (vec![1, 0, 0, 0], b"hi".to_vec()));
        assert_eq!(got[1].1.len(), 600);
        assert!(got[1].1[..400].iter().all(|&c| c == b'a') && got[1].1[400..].iter().all(|&c| c == b'b'));
    }

    #[test]
    fn hostile_databases_are_refused() {
        let err = |b: &[u8]| pairs(b).expect_err("refused");
        let mut good = db(4);
        hash_page(&mut good, 1, &[vec![H_KEYDATA, 1], offpage(2, 600)]);
        overflow_page(&mut good, 2, &[b'a'; 400], 3);
        overflow_page(&mut good, 3, &[b'b'; 200], 0);
        assert!(pairs(&good).is_ok());
        // Every truncation.
        for n in (0..good.len()).step_by(7) {
            assert!(pairs(&good[..n]).is_err(), "{n}");
        }
        // A loop: page 3 names page 2 again.
        let mut b = good.clone();
        b[3 * 512 + 16..3 * 512 + 20].copy_from_slice(&2u32.to_le_bytes());
        assert!(err(&b).contains("longer than") || err(&b).contains("loops"), "{}", err(&b));
        let mut b = good.clone();
        overflow_page(&mut b, 2, &[], 2);
        assert!(err(&b).contains("loops"), "{}", err(&b));
        // Out-of-range page numbers.
        let mut b = good.clone();
        hash_page(&mut b, 1, &[vec![H_KEYDATA, 1], offpage(99, 600)]);
        assert!(err(&b).contains("out of range"));
        let mut b = good.clone();
        hash_page(&mut b, 1, &[vec![H_KEYDATA, 1], offpage(0, 600)]);
        assert!(err(&b).contains("out of range"));
        // A chain shorter than it said, a used length past its page, a wrong page type.
        let mut b = good.clone();
        hash_page(&mut b, 1, &[vec![H_KEYDATA, 1], offpage(2, 601)]);
        assert!(err(&b).contains("not 601"));
        let mut b = good.clone();
        b[2 * 512 + 22..2 * 512 + 24].copy_from_slice(&600u16.to_le_bytes());
        assert!(err(&b).contains("more than it holds"));
        let mut b = good.clone();
        b[3 * 512 + 25] = P_HASH;
        assert!(err(&b).contains("not 7") || err(&b).contains("items"));
        // Wrong page sizes, a last page past the file, other formats.
        for size in [0u32, 256, 1000, 1 << 17] {
            let mut b = good.clone();
            b[20..24].copy_from_slice(&size.to_le_bytes());
            assert!(err(&b).contains("page size"), "{size}");
        }
        let mut b = good.clone();
        b[32..36].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(err(&b).contains("fewer than"));
        let mut b = good.clone();
        b[12..16].copy_from_slice(&0x053162u32.to_le_bytes());
        assert!(err(&b).contains("not a Berkeley DB hash"));
        let mut b = good.clone();
        b[24] = 1;
        assert!(err(&b).contains("encrypted"));
        // Items outside their page, an odd count, an unknown item type.
        let mut b = good.clone();
        b[512 + PAGE_HEADER..512 + PAGE_HEADER + 2].copy_from_slice(&10u16.to_le_bytes());
        assert!(err(&b).contains("outside"));
        let mut b = good.clone();
        b[512 + 20..512 + 22].copy_from_slice(&3u16.to_le_bytes());
        assert!(err(&b).contains("claims 3 items"));
        let mut b = good;
        hash_page(&mut b, 1, &[vec![H_KEYDATA, 1], vec![2, 0]]);
        assert!(err(&b).contains("type 2"));
    }

    #[test]
    fn big_endian_databases_are_read() {
        let mut b = vec![0u8; 1024];
        b[12..16].copy_from_slice(&MAGIC_HASH.to_be_bytes());
        b[20..24].copy_from_slice(&512u32.to_be_bytes());
        b[25] = P_HASHMETA;
        b[32..36].copy_from_slice(&1u32.to_be_bytes());
        b[512 + 25] = P_HASH;
        b[512 + 20..512 + 22].copy_from_slice(&2u16.to_be_bytes());
        b[1022..1024].copy_from_slice(&[H_KEYDATA, 7]);
        b[1019..1022].copy_from_slice(&[H_KEYDATA, b'o', b'k']);
        b[512 + 26..512 + 28].copy_from_slice(&510u16.to_be_bytes());
        b[512 + 28..512 + 30].copy_from_slice(&507u16.to_be_bytes());
        assert_eq!(pairs(&b), Ok(vec![(vec![7], b"ok".to_vec())]));
    }
}
