//! Tier 3: a pod in one zone through containerd's CRI plugin (Debian's containerd 1.6 in the
//! KVM testbed), driven by `cri-client` (tools/cri-client) as the kubelet would: RunPodSandbox
//! with runtime handler `zone` (a host-network pod: no CNI), two containers sharing the pod's
//! one zone VMM, ExecSync, ContainerStats, UpdateContainerResources, the CRI log file,
//! containerd restarted while the pod runs, Stop/Remove of containers and pod, a removed
//! container's spare disk reused by a later one; and nothing (shim, VMM, swtpm, mount,
//! socket, zone state) left afterwards.
//!
//! Images come from local OCI layouts (no registry): busybox for the containers and a busybox
//! that sleeps as the pod sandbox ("pause") image, both imported into containerd's `k8s.io`
//! namespace, which is CRI's.

use zone_tests::containerd::{
    assert_nothing_left, run_with_containerd, ContainerdScript, IMPORT_CRI_IMAGES,
};
use zone_tests::{value, TestbedOutput};

/// Sets CRI's sandbox image and the shim's spare disks before containerd starts, then imports
/// the images into CRI's namespace.
const SETTINGS: &str = r#"
export ZONES_SANDBOX_IMAGE=zones.local/pause:1
# Two spare disks: a third container fits only in a disk a removed one gave back.
printf 'spare_disks = 2\nspare_disk_mib = 128\n' >/tmp/shim.toml
export ZONES_SHIM_CONFIG_PATH=/tmp/shim.toml
L=/tmp/pod-logs
"#;

fn run(body: &str) -> TestbedOutput {
    let script = format!("{IMPORT_CRI_IMAGES}{body}");
    let test = ContainerdScript {
        settings: SETTINGS,
        needs: "cri-client",
        script: &script,
    };
    run_with_containerd(&test, 900)
}

#[test]
fn test_cri_pod_of_two_containers_runs_in_one_zone_and_survives_a_containerd_restart() {
    let out = run(r#"
pod=$(cri-client run-pod --handler zone --log-dir $L p1); echo "run-pod-rc=$?"
create() { # NAME TEXT: a container that prints TEXT, then sleeps
  cri-client create --pod "$pod" --pod-name p1 --log-dir $L --image busybox $1 -- \
    sh -c "echo $2; exec sleep 1000"
}
c1=$(create c1 hello-from-c1); echo "create1-rc=$?"
cri-client start "$c1"; echo "start1-rc=$?"
c2=$(create c2 hello-from-c2); echo "create2-rc=$?"
cri-client start "$c2"; echo "start2-rc=$?"
echo "vmm-running=$(count zone-vmm)"
echo "shim-running=$(count containerd-shim)"

echo "exec-out=$(cri-client exec-sync "$c2" -- sh -c 'echo in-c2')"
cri-client exec-sync "$c1" -- sh -c 'echo to-stderr >&2; exit 3' 2>/tmp/exec.err
echo "exec-rc=$?"
echo "exec-err=$(cat /tmp/exec.err)"
cri-client stats "$c1" >/tmp/stats; echo "stats-rc=$?"; cat /tmp/stats
cri-client update --memory 50331648 --cpu-quota 50000 --cpu-period 100000 "$c1"; echo "update-rc=$?"
echo "memory-limit=$(ctr -n k8s.io task metrics "$c1" | awk '$1 == "memory.usage_limit" {print $2}')"
cri-client update --cpu-quota 10 --cpu-period 100000 "$c1" 2>/tmp/update.err; echo "bad-update-rc=$?"
echo "bad-update-named=$(grep -c 'cpu_quota_us 10' /tmp/update.err)"
sleep 1
echo "--- CRI logs"; cat $L/c1.log $L/c2.log
echo "log1=$(grep -c ' stdout F hello-from-c1$' $L/c1.log)"
echo "log2=$(grep -c ' stdout F hello-from-c2$' $L/c2.log)"

sh /zones/test/containerd-zone stop $C
sh /zones/test/containerd-zone start $C || echo containerd-restart-failed
echo "after-restart=$(cri-client exec-sync "$c1" -- echo still-here)"
cri-client pod-status "$pod" | sed 's/^/pod-/'

cri-client stop --timeout 2 "$c2"; echo "stop2-rc=$?"
cri-client rm "$c2"; echo "rm2-rc=$?"
echo "vmm-after-rm2=$(count zone-vmm)"
echo "after-rm2=$(cri-client exec-sync "$c1" -- echo c1-alive)"
c3=$(create c3 hello-from-c3); echo "create3-rc=$?"
cri-client start "$c3"; echo "start3-rc=$?"
echo "exec3-out=$(cri-client exec-sync "$c3" -- sh -c 'echo in-c3')"
cri-client stop-pod "$pod"; echo "stop-pod-rc=$?"
cri-client rm-pod "$pod"; echo "rm-pod-rc=$?"
"#);
    for key in [
        "run-pod-rc",
        "create1-rc",
        "start1-rc",
        "create2-rc",
        "start2-rc",
        "stats-rc",
        "update-rc",
        "stop2-rc",
        "rm2-rc",
        "create3-rc",
        "start3-rc",
        "stop-pod-rc",
        "rm-pod-rc",
    ] {
        assert_eq!(value(&out, key), "0", "{key}\n{out:#?}");
    }
    assert_eq!(
        value(&out, "vmm-running"),
        "1",
        "a pod's containers share one zone\n{out:#?}"
    );
    assert_eq!(value(&out, "shim-running"), "1", "one shim a pod\n{out:#?}");
    assert_eq!(value(&out, "exec-out"), "in-c2", "{out:#?}");
    assert_eq!(value(&out, "exec-rc"), "3", "{out:#?}");
    assert_eq!(value(&out, "exec-err"), "to-stderr", "{out:#?}");
    let nonzero = |key| value(&out, key).parse::<u64>().is_ok_and(|n| n > 0);
    assert!(
        nonzero("memory-usage") || nonzero("cpu-nanos"),
        "ContainerStats reports usage\n{out:#?}"
    );
    assert_eq!(
        value(&out, "memory-limit"),
        "50331648",
        "UpdateContainerResources reached the zone's cgroup\n{out:#?}"
    );
    assert_ne!(value(&out, "bad-update-rc"), "0", "{out:#?}");
    assert_eq!(value(&out, "bad-update-named"), "1", "{out:#?}");
    assert_eq!(
        value(&out, "log1"),
        "1",
        "c1's output in its CRI log\n{out:#?}"
    );
    assert_eq!(
        value(&out, "log2"),
        "1",
        "c2's output in its CRI log\n{out:#?}"
    );
    assert_eq!(
        value(&out, "after-restart"),
        "still-here",
        "the pod runs on after containerd restarts\n{out:#?}"
    );
    assert_eq!(value(&out, "pod-state"), "SANDBOX_READY", "{out:#?}");
    assert_eq!(
        value(&out, "vmm-after-rm2"),
        "1",
        "removing a container keeps the pod's zone\n{out:#?}"
    );
    assert_eq!(value(&out, "after-rm2"), "c1-alive", "{out:#?}");
    assert_eq!(
        value(&out, "exec3-out"),
        "in-c3",
        "a third container reuses the removed one's spare disk\n{out:#?}"
    );
    assert_nothing_left(&out);
}
