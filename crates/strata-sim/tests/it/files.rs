//! Reading compressed trace files from disk.

use std::io::Write;
use std::path::PathBuf;
use strata_sim::trace::{read, Format};

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("strata-sim-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn gzip_lirs_and_xz_cache2k_files_read_back() {
    let dir = TempDir::new("files");
    let lirs = dir.0.join("t.trace.gz");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(b"1\r\n*\r\n2\r\n\r\n1\r\n").expect("in memory");
    std::fs::write(&lirs, gz.finish().expect("in memory")).expect("write");
    assert_eq!(read(&lirs).expect("valid"), [1, 2, 1]);

    let sub = dir.0.join("cache2k");
    std::fs::create_dir_all(&sub).expect("dir");
    let bin = sub.join("w.trace.xz");
    let raw: Vec<u8> = [7i32, -1, 7].iter().flat_map(|k| k.to_be_bytes()).collect();
    let mut xz = Vec::new();
    lzma_rs::xz_compress(&mut &raw[..], &mut xz).expect("in memory");
    std::fs::write(&bin, xz).expect("write");
    assert_eq!(Format::detect(&bin).expect("known"), Format::Cache2k);
    assert_eq!(read(&bin).expect("valid"), [7, 0xffff_ffff, 7]);

    let arc = dir.0.join("a.lis");
    std::fs::write(&arc, "5 2 0 1\n9 1 0 2\n").expect("write");
    assert_eq!(read(&arc).expect("valid"), [5, 6, 9]);
}

#[test]
fn missing_and_corrupt_files_are_errors() {
    let dir = TempDir::new("bad");
    assert!(matches!(read(&dir.0.join("nope.lis")), Err(strata_sim::Error::Io { .. })));
    let bad = dir.0.join("x.trace.gz");
    std::fs::write(&bad, b"not gzip at all").expect("write");
    assert!(read(&bad).is_err());
    assert!(matches!(read(&dir.0.join("x.csv")), Err(strata_sim::Error::UnknownFormat(_))));
}
