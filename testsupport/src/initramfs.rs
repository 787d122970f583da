//! What a test VM's initramfs is made of: a newc cpio writer (the format the kernel unpacks
//! into its root file system) and the dependency names a kernel module declares in its
//! `.modinfo`. Used by the qemu harness in `nat/tests/support/vm.rs`.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

/// `foo.ko` -> `foo`, `crc32c-intel.ko` -> `crc32c_intel`.
pub fn module_name(p: &Path) -> Option<String> {
    let n = p.file_name()?.to_str()?.strip_suffix(".ko")?;
    Some(n.replace('-', "_"))
}

/// A module's `depends=` and its `softdep=pre:` names, from its `.modinfo` strings.
pub fn modinfo_deps(p: &Path) -> Result<(Vec<String>, Vec<String>), String> {
    let bytes = fs::read(p).map_err(|e| format!("reading {}: {e}", p.display()))?;
    let mut depends = Vec::new();
    let mut soft = Vec::new();
    for chunk in bytes.split(|b| *b == 0) {
        if let Some(rest) = chunk.strip_prefix(b"depends=") {
            let text = String::from_utf8_lossy(rest);
            depends.extend(
                text.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| s.replace('-', "_")),
            );
        } else if let Some(rest) = chunk.strip_prefix(b"softdep=") {
            let text = String::from_utf8_lossy(rest);
            // "pre: a b post: c"
            let mut in_pre = false;
            for word in text.split_whitespace() {
                match word {
                    "pre:" => in_pre = true,
                    "post:" => in_pre = false,
                    w if in_pre => soft.push(w.replace('-', "_")),
                    _ => {}
                }
            }
        }
    }
    Ok((depends, soft))
}

/// A newc ("070701") cpio archive, as the kernel unpacks an initramfs.
#[derive(Default)]
pub struct Cpio {
    out: Vec<u8>,
    ino: u32,
    dirs: BTreeSet<String>,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, data: &[u8], rdev: (u32, u32)) {
        self.ino += 1;
        let fields = [
            self.ino,
            mode,
            0,                                               // uid
            0,                                               // gid
            if mode & 0o170000 == 0o040000 { 2 } else { 1 }, // nlink
            0,                                               // mtime
            data.len() as u32,
            0,
            0,
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0, // check
        ];
        self.out.extend_from_slice(b"070701");
        for f in fields {
            self.out.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while self.out.len() % 4 != 0 {
            self.out.push(0);
        }
    }

    /// A directory (0755), once however often it is asked for.
    pub fn dir(&mut self, name: &str) {
        if self.dirs.insert(name.to_owned()) {
            self.entry(name, 0o040755, &[], (0, 0));
        }
    }

    /// A regular file with permissions `perm` (e.g. 0o755).
    pub fn file(&mut self, name: &str, data: &[u8], perm: u32) {
        self.entry(name, 0o100000 | perm, data, (0, 0));
    }

    /// A character device node (0600), e.g. `dev/console` 5:1.
    pub fn char_device(&mut self, name: &str, major: u32, minor: u32) {
        self.entry(name, 0o020600, &[], (major, minor));
    }

    /// The archive, closed by its `TRAILER!!!` entry.
    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, &[], (0, 0));
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_kernel_s_underscores() {
        assert_eq!(
            module_name(Path::new("/m/crc32c-intel.ko")).as_deref(),
            Some("crc32c_intel")
        );
        assert_eq!(
            module_name(Path::new("/m/ip_vs.ko")).as_deref(),
            Some("ip_vs")
        );
        assert_eq!(module_name(Path::new("/m/README")), None);
    }

    #[test]
    fn depends_and_pre_softdeps_are_read_from_modinfo() {
        let dir = std::env::temp_dir().join(format!("podnet-modinfo-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let ko = dir.join("x.ko");
        fs::write(
            &ko,
            b"\x7fELF\0license=GPL\0depends=nf_conntrack,libcrc32c,nf-defrag-ipv6\0softdep=pre: crc32c-generic post: other\0",
        )
        .unwrap();
        let (deps, soft) = modinfo_deps(&ko).unwrap();
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(deps, ["nf_conntrack", "libcrc32c", "nf_defrag_ipv6"]);
        assert_eq!(soft, ["crc32c_generic"]);
    }

    #[test]
    fn a_cpio_archive_is_newc_padded_and_closed_by_its_trailer() {
        let mut c = Cpio::default();
        c.dir("bin");
        c.dir("bin");
        c.file("bin/sh", b"#!", 0o755);
        c.char_device("dev/console", 5, 1);
        let out = c.finish();
        assert_eq!(out.len() % 4, 0);
        assert_eq!(&out[..6], b"070701");
        // one "bin" directory, however often it was asked for
        let text = String::from_utf8_lossy(&out);
        assert_eq!(text.matches("bin\0").count(), 1);
        assert!(text.contains("bin/sh\0"));
        assert!(text.ends_with('\0') || text.contains("TRAILER!!!"));
        let trailer = out.windows(10).rposition(|w| w == b"TRAILER!!!").unwrap();
        // the trailer's header: 6 bytes of magic and 13 fields of 8 hex digits
        let header = &out[trailer - 110..trailer];
        assert_eq!(&header[..6], b"070701");
        // the file's mode field (second field) says a regular file 0755
        let file = out.windows(7).position(|w| w == b"bin/sh\0").unwrap();
        let fh = &out[file - 110..file];
        assert_eq!(&fh[14..22], b"000081ED");
        assert_eq!(&fh[54..62], b"00000002"); // filesize
    }
}
