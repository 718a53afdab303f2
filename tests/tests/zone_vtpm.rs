//! Tier 3: a zone with a vTPM (zone-vmm --tpm) inside the KVM testbed. The zone's /init is a
//! script in a test initrd that carries Debian's tpm2-tools (run through the host's ld.so):
//! it checks /dev/tpm0 and /dev/tpmrm0, hashes the kernel's copy of the event log, reads the
//! PCRs and makes an EK, an AK and a quote through /dev/tpmrm0, and prints the results on the
//! serial console. Back on the host the quote is checked with `tpm2_checkquote`, and the PCRs
//! are compared with the replay of the VMM's event log, with the measurement plan computed
//! from the boot inputs without booting, and with `tpm2_eventlog`'s own replay of the log
//! (which starts every PCR at zero, as Keylime and go-attestation do too).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use zone_attest::eventlog::{EventLog, PcrBank, EV_NO_ACTION};
use zone_attest::measurements::{reference_pcrs, BootInputs, PlatformConfig, ZoneClaims};
use zone_tests::{
    assert_has, assert_nothing_left, repo_root, testbed_run, value, REPORT_LEFTOVERS,
};

const NONCE: &str = "5a6f6e6573207654504d2074657374"; // "Zones vTPM test"
const CMDLINE: &str = "console=ttyS0 panic=-1 quiet";
const QUOTED: &str = "sha256:0,1,2,3,4,5,6,7,8,9,15";
const INITRD_GUEST: &str = "/zones/test/tpm-initrd.cpio";

const ZONE_INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
mkdir -p /proc /sys /dev /tmp
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t securityfs securityfs /sys/kernel/security
export TPM2TOOLS_TCTI=device:/dev/tpmrm0
T() { /opt/tpm/lib/ld-linux-x86-64.so.2 --library-path /opt/tpm/lib /opt/tpm/bin/tpm2 "$@"; }
cd /tmp
echo ZONE-BEGIN
[ -c /dev/tpm0 ] && echo zone-has-tpm0
[ -c /dev/tpmrm0 ] && echo zone-has-tpmrm0
echo "zone-log-sha=$(sha256sum < /sys/kernel/security/tpm0/binary_bios_measurements | cut -d' ' -f1)"
T pcrread @QUOTED@ | sed 's/^/zone-pcrread /'
T createek -c ek.ctx -G ecc -u ek.pub >/dev/null && echo zone-createek-ok
T createak -C ek.ctx -c ak.ctx -G ecc -g sha256 -s ecdsa -u ak.pem -f pem -n ak.name >/dev/null && echo zone-createak-ok
T quote -c ak.ctx -l @QUOTED@ -q @NONCE@ -m quote.msg -s quote.sig -o quote.pcrs -g sha256 >/dev/null && echo zone-quote-ok
for f in ek.pub ak.pem quote.msg quote.sig quote.pcrs; do echo "BEGIN $f"; base64 $f; echo "END $f"; done
echo ZONE-END
poweroff -f
"#;

fn host_tool(name: &str) -> PathBuf {
    let out = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .expect("sh");
    assert!(
        out.status.success(),
        "{name} is missing on this host: run hack/setup"
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// Shared libraries `binary` links, from ldd.
fn libraries(binary: &Path) -> Vec<PathBuf> {
    let out = Command::new("ldd").arg(binary).output().expect("ldd");
    assert!(out.status.success(), "ldd {}", binary.display());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let path = match l.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next()?,
                None => l.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// The test initrd: busybox, the /init script and tpm2-tools with its libraries and the
/// device TCTI (loaded with dlopen, so ldd does not list it).
fn build_initrd(dir: &Path) -> PathBuf {
    let root = dir.join("root");
    let lib = root.join("opt/tpm/lib");
    std::fs::create_dir_all(root.join("bin")).expect("mkdir");
    std::fs::create_dir_all(root.join("opt/tpm/bin")).expect("mkdir");
    std::fs::create_dir_all(&lib).expect("mkdir");
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("busybox (hack/setup)");
    let init = ZONE_INIT
        .replace("@QUOTED@", QUOTED)
        .replace("@NONCE@", NONCE);
    std::fs::write(root.join("init"), init).expect("init");
    let tpm2 = host_tool("tpm2");
    std::fs::copy(&tpm2, root.join("opt/tpm/bin/tpm2")).expect("tpm2");
    let tcti = PathBuf::from("/usr/lib/x86_64-linux-gnu/libtss2-tcti-device.so.0");
    assert!(
        tcti.exists(),
        "{} is missing: run hack/setup",
        tcti.display()
    );
    let mut libs = libraries(&tpm2);
    libs.extend(libraries(&tcti));
    libs.push(tcti);
    for l in libs {
        let name = l.file_name().expect("a file");
        std::fs::copy(&l, lib.join(name)).unwrap_or_else(|e| panic!("{}: {e}", l.display()));
    }
    let out = dir.join("tpm-initrd.cpio");
    let status = Command::new("sh")
        .arg("-c")
        .arg("chmod 755 init bin/busybox opt/tpm/bin/tpm2 opt/tpm/lib/* && find . | cpio -o -H newc -R 0:0 --quiet > \"$0\"")
        .arg(&out)
        .current_dir(&root)
        .status()
        .expect("cpio");
    assert!(status.success(), "packing the test initrd failed");
    out
}

/// Lines between `BEGIN name` and `END name`, base64-decoded by the host's base64.
fn blob(stdout: &str, name: &str) -> Vec<u8> {
    let text: String = stdout
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .skip_while(|l| *l != format!("BEGIN {name}"))
        .skip(1)
        .take_while(|l| *l != format!("END {name}"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(!text.is_empty(), "no {name} in\n{stdout}");
    let mut child = Command::new("base64")
        .arg("-d")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("base64");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("base64 -d");
    assert!(out.status.success(), "{name} is not base64");
    out.stdout
}

/// `N : 0x<hex>` lines (tpm2_pcrread, tpm2_checkquote) after `prefix`, as (PCR, hex).
fn pcr_lines(text: &str, prefix: &str) -> Vec<(usize, String)> {
    text.lines()
        .filter_map(|l| {
            let (n, v) = l.trim().strip_prefix(prefix)?.trim().split_once(':')?;
            let v = v.trim().strip_prefix("0x")?.to_ascii_lowercase();
            Some((n.trim().parse().ok()?, v))
        })
        .collect()
}

/// `tpm2_eventlog`'s replayed SHA-256 values: the `N : 0x<hex>` lines under `sha256:` in its
/// final `pcrs:` section, as (PCR, hex).
fn eventlog_pcrs(text: &str) -> Vec<(usize, String)> {
    let bank = text
        .rsplit_once("\npcrs:")
        .and_then(|(_, pcrs)| pcrs.split_once("sha256:"))
        .unwrap_or_else(|| panic!("no pcrs: sha256: section in tpm2_eventlog's output\n{text}"))
        .1;
    let lines: Vec<&str> = bank
        .lines()
        .skip_while(|l| l.trim().is_empty())
        .take_while(|l| {
            l.trim()
                .split_once(':')
                .is_some_and(|(n, _)| n.trim().parse::<usize>().is_ok())
        })
        .collect();
    pcr_lines(&lines.join("\n"), "")
}

fn assert_pcrs(what: &str, got: &[(usize, String)], want: &PcrBank) {
    let pcrs: Vec<usize> = got.iter().map(|(p, _)| *p).collect();
    assert_eq!(
        pcrs,
        vec![0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 15],
        "{what}: {got:?}"
    );
    for (pcr, v) in got {
        assert_eq!(v, &hex::encode(want[*pcr]), "{what}: PCR {pcr}");
    }
}

#[test]
fn test_zone_vtpm_measured_boot_quote_verifies_and_nothing_left() {
    let dir = tempfile::tempdir().expect("tmp");
    let initrd = build_initrd(dir.path());
    let script = format!(
        r#"
mkdir -p /run/zones/t
zone-vmm --kernel "$ZONES_KERNEL" --initrd {INITRD_GUEST} --memory 256M \
  --serial-log /tmp/console.log --cmdline "{CMDLINE}" \
  --tpm /run/zones/t/vtpm --tpm-event-log /run/zones/t/eventlog --tpm-ek-public /tmp/vmm-ek.pub \
  --zone-claim zone-id=z-e2e --zone-claim image-manifest-digest=sha256:aa \
  --zone-claim oci-config-digest=sha256:bb
echo "vmm-exit=$?"
echo "host-log-sha=$(sha256sum < /run/zones/t/eventlog | cut -d' ' -f1)"
echo "BEGIN eventlog"; base64 /run/zones/t/eventlog; echo "END eventlog"
echo "BEGIN vmm-ek.pub"; base64 /tmp/vmm-ek.pub; echo "END vmm-ek.pub"
tr -d '\r' < /tmp/console.log | sed -n '/^ZONE-BEGIN/,/^ZONE-END/p'
echo "left-swtpm=$(ps -o args | grep -c '[s]wtpm')"
echo "left-in-zone-dir=$(ls -A /run/zones/t | tr '\n' ' ')"
rm -f /run/zones/t/eventlog; rmdir /run/zones/t
{REPORT_LEFTOVERS}"#
    );
    let out = testbed_run(&script, &[(initrd.clone(), INITRD_GUEST)]);
    assert_eq!(value(&out, "vmm-exit"), "0", "{out:#?}");
    assert_has(&out, "zone-has-tpm0");
    assert_has(&out, "zone-has-tpmrm0");
    assert_eq!(
        value(&out, "zone-log-sha"),
        value(&out, "host-log-sha"),
        "binary_bios_measurements differs from the VMM's log\n{out:#?}"
    );
    assert_has(&out, "zone-createek-ok");
    assert_has(&out, "zone-createak-ok");
    assert_has(&out, "zone-quote-ok");
    assert_eq!(
        value(&out, "left-swtpm"),
        "0",
        "swtpm left running\n{out:#?}"
    );
    assert_eq!(
        value(&out, "left-in-zone-dir").trim(),
        "eventlog",
        "vTPM state or sockets left\n{out:#?}"
    );
    assert_nothing_left(&out);

    // The EK the VMM read before the zone ran (--tpm-ek-public) is the EK tpm2_createek
    // derives inside the zone through /dev/tpmrm0.
    assert_eq!(
        blob(&out.stdout, "vmm-ek.pub"),
        blob(&out.stdout, "ek.pub"),
        "the VMM's EK public differs from the zone's"
    );

    // The log replays to the PCRs the zone read, and to the plan computed without booting.
    let log = EventLog::parse(&blob(&out.stdout, "eventlog")).expect("the VMM's event log");
    let replay = log.replay();
    assert_pcrs(
        "zone tpm2_pcrread",
        &pcr_lines(&out.stdout, "zone-pcrread"),
        &replay,
    );
    let kernel_dir = Command::new(repo_root().join("images/kernel/build"))
        .arg("--cached-path")
        .output()
        .expect("images/kernel/build");
    let kernel = std::fs::read(
        Path::new(String::from_utf8_lossy(&kernel_dir.stdout).trim()).join("bzImage"),
    )
    .expect("zone kernel");
    let initrd_bytes = std::fs::read(&initrd).expect("initrd");
    let claims = ZoneClaims {
        zone_id: "z-e2e".into(),
        image_manifest_digest: "sha256:aa".into(),
        oci_config_digest: "sha256:bb".into(),
    };
    let config = PlatformConfig {
        vcpus: 1,
        memory_mib: 256,
        disks_read_only: vec![],
        vsock_cid: None,
        rng: true,
        tpm: Some("crb".into()),
    }
    .canonical_bytes();
    let reference = reference_pcrs(&BootInputs {
        vmm_version: concat!("zone-vmm ", env!("CARGO_PKG_VERSION")),
        zone_config: &config,
        kernel: &kernel,
        cmdline: CMDLINE.as_bytes(),
        initrd: Some(&initrd_bytes),
        claims: &claims,
    });
    assert_eq!(
        replay, reference,
        "the log differs from the measurement plan"
    );

    // The quote verifies on the host with the AK's public key, over our nonce, and covers the
    // PCR values of the replay.
    for f in ["ak.pem", "quote.msg", "quote.sig", "quote.pcrs"] {
        std::fs::write(dir.path().join(f), blob(&out.stdout, f)).expect("write");
    }
    let check = Command::new(host_tool("tpm2_checkquote"))
        .args([
            "-u",
            "ak.pem",
            "-m",
            "quote.msg",
            "-s",
            "quote.sig",
            "-f",
            "quote.pcrs",
        ])
        .args(["-g", "sha256", "-q", NONCE])
        .current_dir(dir.path())
        .output()
        .expect("tpm2_checkquote");
    let text = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success(),
        "tpm2_checkquote refused the quote: {}\n{text}",
        String::from_utf8_lossy(&check.stderr)
    );
    let quoted = pcr_lines(&text, "");
    assert_pcrs("tpm2_checkquote", &quoted, &replay);

    // tpm2_eventlog parses the log, and its replay (every PCR from zero) equals the quoted
    // value of every PCR the log extends, the zone claims' PCR 15 included.
    let log_file = dir.path().join("eventlog.bin");
    std::fs::write(&log_file, log.to_bytes()).expect("write eventlog.bin");
    let parsed = Command::new(host_tool("tpm2_eventlog"))
        .arg(&log_file)
        .output()
        .expect("tpm2_eventlog");
    let parsed_text = String::from_utf8_lossy(&parsed.stdout);
    assert!(
        parsed.status.success(),
        "tpm2_eventlog refused the VMM's log: {}\n{parsed_text}",
        String::from_utf8_lossy(&parsed.stderr)
    );
    let replayed = eventlog_pcrs(&parsed_text);
    let quoted: BTreeMap<usize, String> = quoted.into_iter().collect();
    let logged: BTreeSet<usize> = log
        .events
        .iter()
        .filter(|e| e.event_type != EV_NO_ACTION)
        .map(|e| e.pcr as usize)
        .collect();
    assert_eq!(
        replayed.iter().map(|(p, _)| *p).collect::<BTreeSet<_>>(),
        logged,
        "tpm2_eventlog replayed other PCRs than the log extends\n{parsed_text}"
    );
    for (pcr, value) in &replayed {
        let q = quoted
            .get(pcr)
            .unwrap_or_else(|| panic!("PCR {pcr} is in the event log but not quoted"));
        eprintln!("PCR {pcr:2}: tpm2_eventlog {value}  quoted {q}");
        assert_eq!(
            value, q,
            "PCR {pcr}: tpm2_eventlog's replay differs from the quoted value\n{parsed_text}"
        );
    }
}
