//! The vTPM backend against a real `swtpm` on the host (no KVM needed): measured boot per the
//! plan, then the PCRs read back by our own `TPM2_PCR_Read` and by tpm2-tools, and our event
//! log parsed by `tpm2_eventlog`. Needs swtpm and tpm2-tools (hack/setup installs them).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use zone_attest::eventlog::{Event, PcrBank};
use zone_attest::measurements::{plan, BootInputs, PlatformConfig, ZoneClaims};
use zone_attest::tpm_command::Tpm;
use zone_attest::tpm_types::TpmPublic;
use zone_vmm::vtpm::{endorsement_key, measure_boot, Swtpm};

fn need(tool: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(found, "{tool} is missing on this host: run hack/setup");
}

fn sample_plan() -> Vec<Event> {
    let claims = ZoneClaims {
        zone_id: "z-host-test".into(),
        image_manifest_digest: "sha256:1111".into(),
        oci_config_digest: "sha256:2222".into(),
    };
    let config = PlatformConfig {
        vcpus: 2,
        memory_mib: 256,
        disks_read_only: vec![true],
        vsock_cid: Some(3),
        rng: true,
        tpm: Some("crb".into()),
    }
    .canonical_bytes();
    plan(&BootInputs {
        vmm_version: "zone-vmm test",
        zone_config: &config,
        kernel: b"not really a kernel",
        cmdline: b"console=ttyS0 quiet",
        initrd: Some(b"not really an initrd"),
        claims: &claims,
    })
}

fn read_all_pcrs(tpm: &mut Swtpm) -> PcrBank {
    let all: Vec<u32> = (0..24).collect();
    let values = Tpm::new(tpm).pcr_read(&all).expect("PCR_Read");
    assert_eq!(values.len(), 24);
    let mut out = [[0u8; 32]; 24];
    for (pcr, value) in values {
        out[pcr as usize] = value;
    }
    out
}

fn wait_gone(pid: u32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        // A zombie would still have /proc/<pid>; shutdown() reaps, so it must vanish.
        if !Path::new(&format!("/proc/{pid}")).exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn test_spawned_swtpm_pcrs_equal_replay_and_nothing_left_after_drop() {
    need("swtpm");
    let dir = tempfile::tempdir().expect("tmp");
    let state = dir.path().join("state");
    std::fs::create_dir(&state).expect("mkdir");
    let plan = sample_plan();
    let mut tpm = Swtpm::spawn(Path::new("swtpm"), &state).expect("spawn swtpm");
    let pid = tpm.pid().expect("spawned");
    let log = measure_boot(&mut tpm, &plan).expect("measured boot");
    let replay = log.replay();
    assert_eq!(read_all_pcrs(&mut tpm), replay);
    assert_eq!(replay[17], [0xff; 32], "DRTM PCRs start at all ones");

    // The EK the VMM reports is the TCG default ECC P-256 EK, the same on every derivation,
    // and equals what tpm2_createek (the reference client) derives on the same TPM.
    let ek = endorsement_key(&mut tpm).expect("EK");
    assert_eq!(endorsement_key(&mut tpm).expect("EK again"), ek);
    assert!(ek.p256_public_key().is_ok());
    assert_eq!(
        ek.attributes,
        zone_attest::tpm_command::templates::EK_ATTRIBUTES
    );

    drop(tpm);
    assert!(wait_gone(pid), "swtpm {pid} still running after drop");
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["state"], "no sockets or other files left");
}

/// `tpm2_pcrread sha256:all` output as (PCR, digest) pairs.
fn parse_pcrread(text: &str) -> Vec<(usize, String)> {
    text.lines()
        .filter_map(|l| {
            let (n, v) = l.trim().split_once(':')?;
            let n: usize = n.trim().parse().ok()?;
            let v = v.trim().strip_prefix("0x")?.to_ascii_lowercase();
            Some((n, v))
        })
        .collect()
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn test_connected_swtpm_tpm2_tools_read_replay_values_and_parse_log() {
    need("swtpm");
    need("tpm2_pcrread");
    need("tpm2_eventlog");
    let dir = tempfile::tempdir().expect("tmp");
    let (server, ctrl) = (
        dir.path().join("tpm.sock"),
        dir.path().join("tpm.sock.ctrl"),
    );
    std::fs::create_dir(dir.path().join("state")).expect("mkdir");
    let child = Command::new("swtpm")
        .arg("socket")
        .arg("--tpm2")
        .arg("--tpmstate")
        .arg(format!("dir={}", dir.path().join("state").display()))
        .arg("--server")
        .arg(format!("type=unixio,path={}", server.display()))
        .arg("--ctrl")
        .arg(format!("type=unixio,path={}", ctrl.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start swtpm");
    let _server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(server.exists() && ctrl.exists()) {
        assert!(Instant::now() < deadline, "swtpm made no sockets");
        std::thread::sleep(Duration::from_millis(20));
    }

    let plan = sample_plan();
    let (log, ek) = {
        let mut tpm = Swtpm::connect(&ctrl, &server).expect("connect");
        let log = measure_boot(&mut tpm, &plan).expect("measured boot");
        (log, endorsement_key(&mut tpm).expect("EK"))
    };
    let tools = |args: &[&str]| {
        let out = Command::new(args[0])
            .args(&args[1..])
            .current_dir(dir.path())
            .env("TPM2TOOLS_TCTI", format!("swtpm:path={}", server.display()))
            .output()
            .expect("tpm2-tools");
        assert!(
            out.status.success(),
            "{}: {}",
            args[0],
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    need("tpm2_getcap");
    need("tpm2_createek");
    // endorsement_key flushed its EK: no transient object is left for the guest.
    assert_eq!(tools(&["tpm2_getcap", "handles-transient"]).trim(), "");
    // tpm2_createek derives the same EK: the VMM's EK public is the zone's EK.
    tools(&["tpm2_createek", "-G", "ecc", "-c", "ek.ctx", "-u", "ek.pub"]);
    let tools_ek = std::fs::read(dir.path().join("ek.pub")).expect("ek.pub");
    assert_eq!(ek, TpmPublic::from_tpm2b(&tools_ek).expect("ek.pub parses"));
    assert_eq!(ek.to_tpm2b(), tools_ek);
    let replay = log.replay();
    let log_file = dir.path().join("eventlog.bin");
    std::fs::write(&log_file, log.to_bytes()).expect("write log");

    let out = Command::new("tpm2_pcrread")
        .arg("sha256:all")
        .env("TPM2TOOLS_TCTI", format!("swtpm:path={}", server.display()))
        .output()
        .expect("tpm2_pcrread");
    assert!(
        out.status.success(),
        "tpm2_pcrread: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read = parse_pcrread(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(read.len(), 24, "tpm2_pcrread printed {read:?}");
    for (pcr, value) in &read {
        assert_eq!(value, &hex::encode(replay[*pcr]), "PCR {pcr}");
    }

    let out = Command::new("tpm2_eventlog")
        .arg(&log_file)
        .output()
        .expect("tpm2_eventlog");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "tpm2_eventlog: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pcrs_section = text.split("pcrs:").nth(1).expect("a pcrs: section");
    let printed = parse_pcrread(pcrs_section);
    let printed_pcrs: Vec<usize> = printed.iter().map(|(p, _)| *p).collect();
    assert_eq!(
        printed_pcrs,
        vec![0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 15],
        "{text}"
    );
    // tpm2_eventlog replays every PCR from zero: right for all of ours (the zone claims are in
    // PCR 15, not in a DRTM PCR that starts at all ones).
    for (pcr, value) in &printed {
        assert_eq!(value, &hex::encode(replay[*pcr]), "PCR {pcr} in\n{text}");
    }
}
