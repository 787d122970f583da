//! kill -9 at any point never corrupts the file store: processes hammer one store while the
//! test SIGKILLs them at random; afterwards the store opens, reads and writes normally.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use podnet_ipam::{FileStore, LeaseAttrs, Store, SubnetManager};

const CHILD_ENV: &str = "PODNET_IPAM_CRASH_CHILD";

/// In a child process (the test binary re-run with `CHILD_ENV` set): change the store forever.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let slot: u8 = std::env::var("PODNET_IPAM_CRASH_SLOT")
        .unwrap()
        .parse()
        .unwrap();
    let sm = SubnetManager::new(FileStore::open(&dir).unwrap());
    let attrs = LeaseAttrs::new(std::net::Ipv4Addr::new(198, 18, 9, slot), "vxlan");
    let mut n: u64 = 0;
    loop {
        let mut l = sm.acquire(&attrs, None).unwrap();
        sm.renew(&mut l).unwrap();
        sm.store()
            .replace(
                &format!("/bulk/{slot}"),
                "x".repeat(1000 + (n % 4000) as usize).as_bytes(),
                None,
            )
            .unwrap();
        if n % 3 == 0 {
            sm.release(&l.subnets).unwrap();
        }
        n += 1;
    }
}

/// Kills the children when dropped, also when the test panics: they would run forever.
struct Kids(Vec<Child>);

impl Drop for Kids {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn spawn(dir: &std::path::Path, slot: u8) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir)
        .env("PODNET_IPAM_CRASH_SLOT", slot.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn sigkill_never_corrupts_the_file_store() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let sm = SubnetManager::new(FileStore::open(d.path()).unwrap());
    sm.put_network_config(r#"{"Network":"10.50.0.0/16"}"#)
        .unwrap();
    let mut kids = Kids((1..=4).map(|s| spawn(d.path(), s)).collect());
    let children = &mut kids.0;
    let start = Instant::now();
    let mut seed = 0x2545_f491_4f6c_dd1d_u64 ^ u64::from(std::process::id());
    let mut kills = 0;
    // At least 6 s of kills, and on until the children made 200 changes between them (a
    // loaded machine makes them slower; a minute is the limit).
    let progress = FileStore::open(d.path()).unwrap();
    let enough = |p: &FileStore| p.list("/bulk/").map(|l| l.revision > 200).unwrap_or(false);
    while start.elapsed() < Duration::from_secs(6)
        || (!enough(&progress) && start.elapsed() < Duration::from_secs(60))
    {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(20 + seed % 60));
        let i = (seed >> 8) as usize % children.len();
        let _ = children[i].kill();
        let _ = children[i].wait();
        kills += 1;
        children[i] = spawn(d.path(), i as u8 + 1);
        // The store is readable at every moment.
        sm.leases().expect("store readable while being hammered");
    }
    drop(kids);
    eprintln!("{kills} SIGKILLs");
    let store = FileStore::open(d.path()).expect("store opens after the kills");
    let (leases, _) = sm.leases().unwrap();
    assert!(leases.len() <= 4);
    let stray: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "state.json" && n != "lock")
        .collect();
    assert!(stray.is_empty(), "temporary files left: {stray:?}");
    // And it still works.
    let l = sm
        .acquire(
            &LeaseAttrs::new("198.18.9.99".parse().unwrap(), "vxlan"),
            None,
        )
        .unwrap();
    assert!(store.get(&sm.lease_key(&l.subnets)).unwrap().is_some());
    let bulk = store.list("/bulk/").unwrap();
    assert!(
        bulk.revision > 200,
        "the children made progress (revision {})",
        bulk.revision
    );
    eprintln!("store revision after the kills: {}", bulk.revision);
    assert!(
        bulk.kvs
            .iter()
            .all(|kv| kv.value.iter().all(|&b| b == b'x'))
    );
}
