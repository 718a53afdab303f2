//! Tier 3: containerd-shim-zone-v1 under Debian's real containerd (1.6) in the KVM testbed,
//! driven with `ctr`: `run --rm` prints the command's output; `run -d`, `task exec`, `task ps`,
//! `task metrics`, `task kill`, `task rm`, containerd restarted while a task runs; and nothing (shim, VMM, mount, socket, zone state)
//! is left afterwards. containerd runs privately (`hack/containerd-zone`), with the native
//! snapshotter (the testbed loads no overlay module).

use zone_tests::{repo_root, testbed_run_with, value, TestbedOutput};

/// Starts the private containerd and imports the busybox test image; sets `$img`.
const PRELUDE: &str = r#"
export ZONES_SHIM_LOG=/tmp/shim.log
C=/tmp/ctrd
for tool in containerd ctr containerd-shim-zone-v1; do
  command -v $tool >/dev/null || echo "missing=$tool (run hack/setup and hack/build)"
done
sh /zones/test/containerd-zone start $C || echo containerd-start-failed
eval "$(sh /zones/test/containerd-zone env $C)"
tar -C /zones/images/busybox -cf /tmp/busybox.tar .
ctr images import /tmp/busybox.tar >/tmp/import.out 2>&1 || { echo import-failed; cat /tmp/import.out; }
img=$(ctr images ls -q | head -n 1)
echo "image=$img"
"#;

/// Reports what is left and the logs; stops containerd.
const EPILOGUE: &str = r#"
sleep 1
echo "left-shim=$(ps -o comm | grep -c '^containerd-shim')"
echo "left-vmm=$(ps -o comm | grep -c '^zone-vmm')"
echo "left-mounts=$(grep -c -e /tmp/ctrd -e /run/containerd /proc/mounts)"
echo "left-sockets=$(ls -A /run/containerd/s 2>/dev/null | wc -l)"
echo "left-state=$(ls -A /run/zones 2>/dev/null | wc -l)"
sh /zones/test/containerd-zone stop $C
echo "--- shim log" >&2; cat /tmp/shim.log >&2
echo "--- containerd log" >&2; grep -v 'level=info' $C/containerd.log | tail -n 40 >&2
"#;

fn run(body: &str) -> TestbedOutput {
    let script = format!("{PRELUDE}{body}{EPILOGUE}");
    testbed_run_with(
        &script,
        &[(
            repo_root().join("hack/containerd-zone"),
            "/zones/test/containerd-zone",
        )],
        &["--containerd", "--timeout", "600"],
    )
}

fn assert_nothing_left(out: &TestbedOutput) {
    for key in [
        "left-shim",
        "left-vmm",
        "left-mounts",
        "left-sockets",
        "left-state",
    ] {
        assert_eq!(value(out, key), "0", "{key}\n{out:#?}");
    }
}

#[test]
fn test_ctr_run_rm_prints_output_and_detached_task_exec_ps_metrics_kill_rm() {
    let out = run(r#"
out=$(ctr run --runtime io.containerd.zone.v1 --rm "$img" t1 echo hi 2>/tmp/run.err)
echo "run-rc=$?"
echo "run-out=$out"
cat /tmp/run.err

ctr run --runtime io.containerd.zone.v1 -d "$img" t2 sleep 1000 2>&1; echo "run-d-rc=$?"
echo "exec-out=$(ctr task exec --exec-id e1 t2 sh -c 'echo in-exec' 2>&1)"
ctr task exec --exec-id e2 t2 sh -c 'exit 7' 2>&1; echo "exec-rc=$?"
ctr task ps t2 >/tmp/ps 2>&1; echo "ps-rc=$?"; cat /tmp/ps
echo "ps-pids=$(tail -n +2 /tmp/ps | grep -c .)"
ctr task metrics t2 >/tmp/metrics 2>&1; echo "metrics-rc=$?"; cat /tmp/metrics
echo "metrics-pids=$(grep -c -i pids /tmp/metrics)"
ctr task pause t2 >/tmp/pause 2>&1; echo "pause-rc=$?"
echo "pause-unimplemented=$(grep -c -i 'not implemented\|unimplemented' /tmp/pause)"
sh /zones/test/containerd-zone stop $C
sh /zones/test/containerd-zone start $C || echo containerd-restart-failed
echo "after-restart=$(ctr task exec --exec-id e3 t2 echo reconnected 2>&1)"
ctr task kill -s SIGKILL t2 2>&1; echo "kill-rc=$?"
i=0; while ! ctr task ls | grep t2 | grep -q STOPPED && [ $i -lt 100 ]; do sleep 0.2; i=$((i+1)); done
echo "status=$(ctr task ls | grep t2 | awk '{print $3}')"
ctr task rm t2 2>&1; echo "rm-rc=$?"
ctr container rm t2 2>&1; echo "container-rm-rc=$?"
"#);
    assert_eq!(value(&out, "image"), "busybox:latest", "{out:#?}");
    assert_eq!(value(&out, "run-rc"), "0", "{out:#?}");
    assert_eq!(value(&out, "run-out"), "hi", "{out:#?}");
    assert_eq!(value(&out, "run-d-rc"), "0", "{out:#?}");
    assert_eq!(value(&out, "exec-out"), "in-exec", "{out:#?}");
    assert_eq!(value(&out, "exec-rc"), "7", "{out:#?}");
    assert_eq!(value(&out, "ps-rc"), "0", "{out:#?}");
    assert_eq!(value(&out, "ps-pids"), "1", "{out:#?}");
    assert_eq!(value(&out, "metrics-rc"), "0", "{out:#?}");
    assert_ne!(value(&out, "metrics-pids"), "0", "{out:#?}");
    assert_ne!(value(&out, "pause-rc"), "0", "{out:#?}");
    assert_eq!(
        value(&out, "after-restart"),
        "reconnected",
        "containerd reconnects through the bundle's address file\n{out:#?}"
    );
    assert_eq!(value(&out, "kill-rc"), "0", "{out:#?}");
    assert_eq!(value(&out, "status"), "STOPPED", "{out:#?}");
    assert_eq!(value(&out, "rm-rc"), "0", "{out:#?}");
    assert_nothing_left(&out);
}
