//! Tier 3: containerd-shim-zone-v1 under Debian's real containerd (1.6) in the KVM testbed,
//! driven with `ctr`: `run --rm` prints the command's output; `run -t` gets a terminal; a task
//! killed for memory gives TaskOOM; `run -d`, `task exec`, `task ps`, `task metrics`, `task kill`, `task rm`; containerd restarted
//! while a task runs; containerd 2.3's start handshake; and nothing (shim, VMM, mount, socket,
//! zone state) is left afterwards. containerd runs privately (`hack/containerd-zone`), with the
//! native snapshotter (the testbed loads no overlay module).

use zone_tests::containerd::{assert_nothing_left, run_with_containerd, ContainerdScript};
use zone_tests::{value, TestbedOutput};

/// Imports the busybox test image into containerd's default namespace; sets `$img`.
const IMPORT: &str = r#"
tar -C /zones/images/busybox -cf /tmp/busybox.tar .
ctr images import /tmp/busybox.tar >/tmp/import.out 2>&1 || { echo import-failed; cat /tmp/import.out; }
img=$(ctr images ls -q | head -n 1)
echo "image=$img"
"#;

fn run(body: &str) -> TestbedOutput {
    let script = format!("{IMPORT}{body}");
    let test = ContainerdScript {
        settings: "",
        needs: "script",
        script: &script,
    };
    run_with_containerd(&test, 600)
}

#[test]
fn test_ctr_run_rm_prints_output_and_detached_task_exec_ps_metrics_kill_rm() {
    let out = run(r#"
out=$(ctr run --runtime io.containerd.zone.v1 --rm "$img" t1 echo hi 2>/tmp/run.err)
echo "run-rc=$?"
echo "run-out=$out"
cat /tmp/run.err

# -t: ctr wants a terminal on its stdin; util-linux script gives it one.
script -q -e -c "ctr run --runtime io.containerd.zone.v1 -t --rm $img t3 sh -c 'tty; exit 3'" /dev/null >/tmp/tty.out 2>&1
echo "tty-rc=$?"
echo "tty-name=$(grep -o '/dev/pts/[0-9]*' /tmp/tty.out | head -n 1)"
cat /tmp/tty.out
# TaskOOM: dd's 64 MiB buffer does not fit its 16 MiB memory limit; the zone's kernel kills
# it while read() fills the buffer. (A shell growing a string instead can thrash for minutes:
# reclaim keeps dropping and refaulting busybox's text, which counts as progress.)
ctr events >/tmp/events 2>&1 &
events_pid=$!
ctr run --runtime io.containerd.zone.v1 --memory-limit 16777216 --rm "$img" t4 \
  dd if=/dev/zero of=/dev/null bs=64M count=1 2>&1
echo "oom-rc=$?"
sleep 1; kill $events_pid
echo "oom-events=$(grep -c '/tasks/oom.*"t4"' /tmp/events)"
echo "event-order=$(grep '"t4"' /tmp/events | grep -o '/tasks/[a-z]*' | tr '\n' ' ')"
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
# containerd 2.3's handshake, by hand: BootstrapParams naming t2 in namespace default on
# stdin get a BootstrapResult (version 2, the bundle's address, ttrpc); no stdin, the address.
bundle=$C/state/io.containerd.runtime.v2.task/default/t2
shim_start() { (cd $bundle && containerd-shim-zone-v1 -namespace default -address $C/containerd.sock -publish-binary /bin/true -id t2 start); }
printf '\n\002t2\022\007default' | shim_start >/tmp/boot.out; echo "bootstrap-rc=$?"
echo "bootstrap-head=$(head -c 3 /tmp/boot.out | od -An -tx1 | tr -d ' ')"
echo "bootstrap-tail=$(tail -c 5 /tmp/boot.out)"
echo "bootstrap-address=$(grep -c "$(cat $bundle/address)" /tmp/boot.out)"
echo "legacy-address=$([ "$(shim_start </dev/null)" = "$(cat $bundle/address)" ] && echo same)"
ctr task kill -s SIGKILL t2 2>&1; echo "kill-rc=$?"
i=0; while ! ctr task ls | grep t2 | grep -q STOPPED && [ $i -lt 100 ]; do sleep 0.2; i=$((i+1)); done
echo "status=$(ctr task ls | grep t2 | awk '{print $3}')"
ctr task rm t2 2>&1; echo "rm-rc=$?"
ctr container rm t2 2>&1; echo "container-rm-rc=$?"
"#);
    assert_eq!(value(&out, "image"), "busybox:latest", "{out:#?}");
    assert_eq!(value(&out, "run-rc"), "0", "{out:#?}");
    assert_eq!(value(&out, "run-out"), "hi", "{out:#?}");
    assert_eq!(value(&out, "tty-rc"), "3", "{out:#?}");
    assert_eq!(value(&out, "tty-name"), "/dev/pts/0", "{out:#?}");
    assert_eq!(value(&out, "oom-rc"), "137", "{out:#?}");
    assert_eq!(value(&out, "oom-events"), "1", "{out:#?}");
    // TaskOOM comes from the zone's kernel, TaskExit from the process's end: either may be
    // first; the task's own events keep their order.
    let order: Vec<&str> = value(&out, "event-order")
        .split_whitespace()
        .filter(|topic| *topic != "/tasks/oom")
        .collect();
    assert_eq!(
        order,
        [
            "/tasks/create",
            "/tasks/start",
            "/tasks/exit",
            "/tasks/delete"
        ],
        "{out:#?}"
    );
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
    assert_eq!(value(&out, "bootstrap-rc"), "0", "{out:#?}");
    // BootstrapResult: field 1 (version) = 2, then field 2 (address), ..., "ttrpc" last.
    assert_eq!(value(&out, "bootstrap-head"), "080212", "{out:#?}");
    assert_eq!(value(&out, "bootstrap-tail"), "ttrpc", "{out:#?}");
    assert_eq!(value(&out, "bootstrap-address"), "1", "{out:#?}");
    assert_eq!(value(&out, "legacy-address"), "same", "{out:#?}");
    assert_eq!(value(&out, "kill-rc"), "0", "{out:#?}");
    assert_eq!(value(&out, "status"), "STOPPED", "{out:#?}");
    assert_eq!(value(&out, "rm-rc"), "0", "{out:#?}");
    assert_nothing_left(&out);
}
