//! Trace readers.
//!
//! | format | layout | example |
//! |---|---|---|
//! | [`Format::Arc`] | text lines `start count ignore reqno`; each line requests keys `start .. start + count` | `OLTP.lis.zst` |
//! | [`Format::Lirs`] | text, one key per line; lines that are empty or `*` are skipped; CRLF allowed | `loop.trace.gz` |
//! | [`Format::Cache2k`] | binary, big-endian 32-bit signed keys | `web07.trace.xz` |
//!
//! The compression is chosen by the last extension: `.zst`, `.gz`, `.xz`, or none.

use crate::{Error, Result};
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// The most keys one ARC line may expand to; real traces stay far below, and the bound keeps
/// a corrupt line from exhausting memory.
pub const MAX_ARC_RUN: u64 = 1 << 24;

/// A trace file layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// ARC traces (Megiddo and Modha): `start count ignore reqno` per line.
    Arc,
    /// LIRS traces (Jiang and Zhang): one decimal key per line.
    Lirs,
    /// cache2k traces: big-endian `i32` keys.
    Cache2k,
}

/// A decompression layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// Plain bytes.
    None,
    /// Zstandard (`.zst`).
    Zstd,
    /// gzip (`.gz`).
    Gzip,
    /// xz (`.xz`).
    Xz,
}

impl Compression {
    /// The compression a file name's last extension names.
    pub fn detect(path: &Path) -> Compression {
        match path.extension().and_then(|e| e.to_str()) {
            Some("zst") => Compression::Zstd,
            Some("gz") => Compression::Gzip,
            Some("xz") => Compression::Xz,
            _ => Compression::None,
        }
    }
}

impl Format {
    /// The format a file name implies: `.lis` is ARC; `.trace` is cache2k binary when it is
    /// xz-compressed or sits in a `cache2k` directory (as the cache2k set is distributed),
    /// and LIRS text otherwise.
    pub fn detect(path: &Path) -> Result<Format> {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let stem = name.strip_suffix(".zst").or_else(|| name.strip_suffix(".gz"));
        let stem = stem.or_else(|| name.strip_suffix(".xz")).unwrap_or(name);
        let in_cache2k = path
            .parent()
            .and_then(|p| p.file_name())
            .is_some_and(|d| d.to_str().is_some_and(|d| d.eq_ignore_ascii_case("cache2k")));
        if stem.ends_with(".lis") {
            Ok(Format::Arc)
        } else if stem.ends_with(".trace") {
            if in_cache2k || Compression::detect(path) == Compression::Xz {
                Ok(Format::Cache2k)
            } else {
                Ok(Format::Lirs)
            }
        } else {
            Err(Error::UnknownFormat(path.to_path_buf()))
        }
    }
}

/// Opens `path` and undoes its compression.
pub fn open(path: &Path) -> Result<Box<dyn Read>> {
    let io = |source| Error::Io { path: path.to_path_buf(), source };
    let file = BufReader::new(File::open(path).map_err(io)?);
    Ok(match Compression::detect(path) {
        Compression::None => Box::new(file),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(file)),
        Compression::Zstd => Box::new(
            ruzstd::decoding::StreamingDecoder::new(file)
                .map_err(|e| io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?,
        ),
        Compression::Xz => {
            // lzma-rs decodes a whole stream at once; the traces are small enough.
            let mut out = Vec::new();
            lzma_rs::xz_decompress(&mut BufReader::new(file), &mut out).map_err(|e| {
                io(std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))
            })?;
            Box::new(std::io::Cursor::new(out))
        }
    })
}

/// Reads a whole trace file: one key per request.
pub fn read(path: &Path) -> Result<Vec<u64>> {
    let format = Format::detect(path)?;
    read_as(path, format)
}

/// Reads a trace file in the given format.
pub fn read_as(path: &Path, format: Format) -> Result<Vec<u64>> {
    let reader = open(path)?;
    parse(reader, format).map_err(|e| with_path(e, path))
}

/// Parses a decompressed trace from any reader.
pub fn parse(reader: impl Read, format: Format) -> Result<Vec<u64>> {
    match format {
        Format::Arc => parse_arc(BufReader::with_capacity(1 << 16, reader)),
        Format::Lirs => parse_lirs(BufReader::with_capacity(1 << 16, reader)),
        Format::Cache2k => parse_cache2k(reader),
    }
}

fn with_path(e: Error, path: &Path) -> Error {
    match e {
        Error::Io { source, .. } => Error::Io { path: path.to_path_buf(), source },
        Error::Parse { record, message, .. } => {
            Error::Parse { path: path.to_path_buf(), record, message }
        }
        other => other,
    }
}

fn parse_error(record: u64, message: impl Into<String>) -> Error {
    Error::Parse { path: PathBuf::new(), record, message: message.into() }
}

fn read_error(source: std::io::Error) -> Error {
    Error::Io { path: PathBuf::new(), source }
}

/// Calls `f` with each line (without its line ending) and its 1-based number.
fn for_each_line(
    mut reader: impl BufRead,
    mut f: impl FnMut(&str, u64) -> Result<()>,
) -> Result<()> {
    let mut line = String::new();
    let mut number = 0u64;
    loop {
        line.clear();
        let n = reader.read_line(&mut line).map_err(read_error)?;
        if n == 0 {
            return Ok(());
        }
        number += 1;
        f(line.trim_end_matches(['\n', '\r']), number)?;
    }
}

fn parse_arc(reader: impl BufRead) -> Result<Vec<u64>> {
    let mut keys = Vec::new();
    for_each_line(reader, |line, n| {
        let mut fields = line.split_ascii_whitespace();
        let Some(first) = fields.next() else { return Ok(()) };
        let start: u64 = first
            .parse()
            .map_err(|_| parse_error(n, format!("start `{first}` is not a number")))?;
        let count = fields.next().ok_or_else(|| parse_error(n, "missing count"))?;
        let count: u64 = count
            .parse()
            .map_err(|_| parse_error(n, format!("count `{count}` is not a number")))?;
        if count > MAX_ARC_RUN {
            return Err(parse_error(n, format!("count {count} exceeds {MAX_ARC_RUN}")));
        }
        let end =
            start.checked_add(count).ok_or_else(|| parse_error(n, "start + count overflows"))?;
        keys.extend(start..end);
        Ok(())
    })?;
    Ok(keys)
}

fn parse_lirs(reader: impl BufRead) -> Result<Vec<u64>> {
    let mut keys = Vec::new();
    for_each_line(reader, |line, n| {
        let t = line.trim();
        if t.is_empty() || t == "*" {
            return Ok(());
        }
        // Keys are decimal; a negative one is kept as its two's-complement bit pattern.
        let key = t
            .parse::<u64>()
            .or_else(|_| t.parse::<i64>().map(|k| k as u64))
            .map_err(|_| parse_error(n, format!("`{t}` is not a key")))?;
        keys.push(key);
        Ok(())
    })?;
    Ok(keys)
}

fn parse_cache2k(mut reader: impl Read) -> Result<Vec<u64>> {
    let mut bytes = Vec::new();
    reader.read_to_end(&mut bytes).map_err(read_error)?;
    if bytes.len() % 4 != 0 {
        return Err(parse_error(
            (bytes.len() / 4) as u64 + 1,
            format!("{} trailing bytes after the last 4-byte key", bytes.len() % 4),
        ));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| u64::from(i32::from_be_bytes([c[0], c[1], c[2], c[3]]) as u32))
        .collect())
}

/// The number of distinct keys in a trace.
pub fn unique_keys(trace: &[u64]) -> usize {
    let mut seen = std::collections::HashSet::with_capacity(trace.len() / 4);
    trace.iter().filter(|k| seen.insert(**k)).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_from_memory() {
        let arc = parse(&b"10 3 0 1\n\n2 1 0 2\n"[..], Format::Arc).expect("valid");
        assert_eq!(arc, [10, 11, 12, 2]);
        let lirs = parse(&b"5\r\n*\r\n\r\n7\r\n5"[..], Format::Lirs).expect("valid");
        assert_eq!(lirs, [5, 7, 5]);
        let bin =
            parse(&[0u8, 0, 1, 0, 0xff, 0xff, 0xff, 0xff][..], Format::Cache2k).expect("valid");
        assert_eq!(bin, [256, 0xffff_ffff]);
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        for (input, format) in [
            (&b"x 1 0 0\n"[..], Format::Arc),
            (&b"1\n"[..], Format::Arc),
            (&b"1 99999999999 0 0\n"[..], Format::Arc),
            (&b"18446744073709551615 2 0 0\n"[..], Format::Arc),
            (&b"1\nabc\n"[..], Format::Lirs),
            (&b"\0\0\0\0\0"[..], Format::Cache2k),
        ] {
            assert!(matches!(parse(input, format), Err(Error::Parse { .. })), "{input:?}");
        }
    }

    #[test]
    fn formats_are_detected_by_name() {
        let cases = [
            ("arc/OLTP.lis.zst", Some(Format::Arc)),
            ("lirs/loop.trace.gz", Some(Format::Lirs)),
            ("cache2k/web07.trace.xz", Some(Format::Cache2k)),
            ("cache2k/web07.trace", Some(Format::Cache2k)),
            ("x/y.trace", Some(Format::Lirs)),
            ("x/notes.txt", None),
        ];
        for (name, want) in cases {
            assert_eq!(Format::detect(Path::new(name)).ok(), want, "{name}");
        }
        assert_eq!(Compression::detect(Path::new("a.lis.zst")), Compression::Zstd);
        assert_eq!(Compression::detect(Path::new("a.lis")), Compression::None);
    }
}
