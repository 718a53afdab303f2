//! Tier 3: a container's OCI settings in a real zone (read-only root, tmpfs mounts,
//! capabilities, rlimits, no-new-privileges), refused bad values, live output (`logs -f`) and
//! cgroup stats of a detached zone (`zonectl stats`).

use zone_tests::{testbed_run, value};

#[test]
fn test_container_settings_applied_bad_ones_refused_stats_and_logs_follow() {
    let out = testbed_run(
        r#"
zonectl image import /zones/images/busybox >/dev/null || echo import-failed
zonectl run --rm --read-only --tmpfs /cache:size=8m --cap-drop all --cap-add chown \
  --ulimit nofile=100:200 --security-opt no-new-privileges busybox sh -c '
    echo "capeff=$(grep ^CapEff /proc/self/status | cut -f2)"
    echo "capbnd=$(grep ^CapBnd /proc/self/status | cut -f2)"
    echo "nnp=$(grep ^NoNewPrivs /proc/self/status | cut -f2)"
    echo "nofile=$(ulimit -n):$(ulimit -Hn)"
    touch /x 2>/dev/null; echo "root-write-rc=$?"
    touch /cache/y && echo "cache-write=ok"
    echo "mounts-visible=$(awk '"'"'$5 ~ /^\/run\/zone/'"'"' /proc/self/mountinfo | wc -l)"
  '
echo "settings-rc=$?"
zonectl run --rm busybox sh -c 'echo "default-capeff=$(grep ^CapEff /proc/self/status | cut -f2)"; touch /x && echo default-root-write=ok'
zonectl run --rm --cap-add fly busybox true 2>/tmp/cap.err; echo "bad-cap-rc=$?"
echo "bad-cap-named=$(grep -c CAP_FLY /tmp/cap.err)"
zonectl run --rm --ulimit nofile=5:2 busybox true 2>/dev/null; echo "bad-ulimit-rc=$?"
zonectl run --rm --tmpfs /cache:suid-please busybox true 2>/tmp/tmpfs.err; echo "bad-tmpfs-rc=$?"
echo "bad-tmpfs-named=$(grep -c suid-please /tmp/tmpfs.err)"

zonectl run -d --name ticker busybox sh -c 'for i in 1 2 3; do echo tick-$i; sleep 1; done' >/dev/null
echo "follow=$(zonectl logs -f ticker | tr '\n' ' ')"
zonectl run -d --name busy busybox sh -c 'while :; do :; done' >/dev/null
# exec waits until the main process runs.
zonectl exec busy true
sleep 2
zonectl stats --json busy >/tmp/stats.json; echo "stats-rc=$?"
cat /tmp/stats.json
echo "stats-cpu-positive=$(grep -c '"cpu_usage_usec":[1-9]' /tmp/stats.json)"
echo "stats-pids=$(sed 's/.*"pids":\([0-9]*\).*/\1/' /tmp/stats.json)"
zonectl rm -f ticker busy >/dev/null
sleep 1
echo "left-state=$(ls -A /run/zones | wc -l)"
echo "left-vmm=$(ps -o comm | grep -c '^zone-vmm')"
"#,
        &[],
    );
    assert_eq!(value(&out, "settings-rc"), "0", "{out:#?}");
    assert_eq!(
        value(&out, "capeff"),
        "0000000000000001",
        "only CAP_CHOWN\n{out:#?}"
    );
    assert_eq!(value(&out, "capbnd"), "0000000000000001", "{out:#?}");
    assert_eq!(value(&out, "nnp"), "1", "{out:#?}");
    assert_eq!(value(&out, "nofile"), "100:200", "{out:#?}");
    assert_eq!(
        value(&out, "root-write-rc"),
        "1",
        "read-only root\n{out:#?}"
    );
    assert_eq!(value(&out, "cache-write"), "ok", "{out:#?}");
    assert_eq!(
        value(&out, "mounts-visible"),
        "0",
        "the zone's mounts are hidden\n{out:#?}"
    );
    assert_eq!(
        value(&out, "default-capeff"),
        "00000000a80425fb",
        "Docker's default capabilities\n{out:#?}"
    );
    assert_eq!(value(&out, "default-root-write"), "ok", "{out:#?}");
    assert_eq!(value(&out, "bad-cap-rc"), "126", "{out:#?}");
    assert_eq!(value(&out, "bad-cap-named"), "1", "{out:#?}");
    assert_eq!(value(&out, "bad-ulimit-rc"), "125", "{out:#?}");
    assert_eq!(value(&out, "bad-tmpfs-rc"), "126", "{out:#?}");
    assert_eq!(value(&out, "bad-tmpfs-named"), "1", "{out:#?}");
    assert_eq!(
        value(&out, "follow").trim(),
        "tick-1 tick-2 tick-3",
        "{out:#?}"
    );
    assert_eq!(value(&out, "stats-rc"), "0", "{out:#?}");
    assert_eq!(value(&out, "stats-cpu-positive"), "1", "{out:#?}");
    assert_eq!(value(&out, "stats-pids"), "1", "{out:#?}");
    assert_eq!(value(&out, "left-state"), "0", "{out:#?}");
    assert_eq!(value(&out, "left-vmm"), "0", "{out:#?}");
}
