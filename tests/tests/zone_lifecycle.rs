//! Tier 3: detached zones and their lifecycle in the KVM testbed: `run -d`, `ps`, `logs`,
//! `inspect`, `stop`, `rm`, and cleaning up a zone whose VMM was killed with SIGKILL.

use zone_tests::{testbed_run, value};

#[test]
fn test_detached_zones_ps_logs_stop_rm_and_killed_vmm_cleaned_up() {
    let out = testbed_run(
        r#"
# STATUS of zone $1 in `zonectl ps $2` (the last column; columns are 3 spaces apart).
status() { zonectl ps $2 | grep "^$1 " | sed 's/.*   //'; }
# Polls (up to 30 s) until zone $1's status in `ps -a` is $2.
await() {
  i=0
  while [ "$(status "$1" -a)" != "$2" ] && [ $i -lt 60 ]; do sleep 0.5; i=$((i+1)); done
}
zonectl image import /zones/images/busybox >/dev/null || echo import-failed

job=$(zonectl run -d --name job busybox sh -c 'echo out; echo err >&2; exit 3')
echo "job-rc=$?"
echo "job-id=$(echo "$job" | grep -cE '^[0-9a-f]{12}$')"
zonectl run -d --name job busybox true 2>/tmp/dup; echo "dup-rc=$?"
grep -q 'is taken' /tmp/dup && echo dup-says-taken
await "$job" "exited (3)"
echo "job-status=$(status "$job" -a)"
echo "job-hidden=$(zonectl ps | grep -c "^$job")"
echo "logs-out=$(zonectl logs job 2>/dev/null)"
echo "logs-err=$(zonectl logs job 2>&1 >/dev/null)"
echo "inspect-exit=$(zonectl inspect "$(echo "$job" | cut -c1-5)" | grep '"exit_code"' | tr -dc '0-9')"

web=$(zonectl run -d --name web busybox sh -c 'echo started; sleep 1000')
await "$web" running
echo "web-status=$(status "$web")"
echo "exec-out=$(zonectl exec web sh -c 'echo in-$(hostname); test -e /init && echo zone-root || echo container-root' | tr '\n' ' ')"
zonectl exec web sh -c 'exit 5'; echo "exec-rc=$?"
echo "exec-tty=$(zonectl exec -t web sh -c 'tty >/dev/null && echo yes' | tr -d '\r')"
zonectl rm web 2>/tmp/rm-running; echo "rm-running-rc=$?"
grep -q 'zonectl stop' /tmp/rm-running && echo rm-says-stop
start=$(date +%s)
zonectl stop web >/dev/null; echo "stop-rc=$?"
echo "stop-secs=$(( $(date +%s) - start ))"
echo "web-stopped=$(status "$web" -a)"
zonectl rm web >/dev/null; echo "rm-web-rc=$?"

sleeper=$(zonectl run -d --name sleeper busybox sleep 1000)
await "$sleeper" running
zonectl kill -s TERM sleeper; echo "kill-rc=$?"
await "$sleeper" "exited (143)"
echo "killed-status=$(status "$sleeper" -a)"
zonectl kill sleeper 2>/dev/null; echo "kill-exited-rc=$?"
zonectl rm sleeper >/dev/null; echo "rm-sleeper-rc=$?"

dead=$(zonectl run -d --name dead busybox sleep 1000)
await "$dead" running
vmm=$(zonectl inspect dead | grep '"vmm_pid"' | tr -dc '0-9')
kill -9 "$vmm"
i=0; while [ "$(status "$dead")" != "vmm died" ] && [ $i -lt 60 ]; do sleep 0.5; i=$((i+1)); done
echo "dead-status=$(status "$dead")"
zonectl rm -f dead >/dev/null; echo "rm-dead-rc=$?"
zonectl rm job >/dev/null; echo "rm-job-rc=$?"
sleep 1
echo "left-state=$(ls -A /run/zones | wc -l)"
echo "left-procs=$(ps -o comm | grep -cE '^(zone-vmm|zonectl)')"
ls -A /run/zones; ps -o pid,stat,comm,args
"#,
        &[],
    );
    assert_eq!(value(&out, "job-rc"), "0", "{out:#?}");
    assert_eq!(value(&out, "job-id"), "1", "run -d prints the id\n{out:#?}");
    assert_eq!(
        value(&out, "exec-out").trim(),
        "in-zone container-root",
        "exec runs in the running zone's container\n{out:#?}"
    );
    assert_eq!(value(&out, "exec-rc"), "5", "{out:#?}");
    assert_eq!(value(&out, "kill-rc"), "0", "{out:#?}");
    assert_eq!(
        value(&out, "killed-status"),
        "exited (143)",
        "SIGTERM ended the main command and the zone\n{out:#?}"
    );
    assert_ne!(value(&out, "kill-exited-rc"), "0", "{out:#?}");
    assert_eq!(value(&out, "rm-sleeper-rc"), "0", "{out:#?}");
    assert_eq!(value(&out, "exec-tty"), "yes", "{out:#?}");
    assert_ne!(value(&out, "dup-rc"), "0", "{out:#?}");
    assert!(
        out.stdout.lines().any(|l| l == "dup-says-taken"),
        "{out:#?}"
    );
    assert_eq!(value(&out, "job-status"), "exited (3)", "{out:#?}");
    assert_eq!(value(&out, "job-hidden"), "0", "ps without -a\n{out:#?}");
    assert_eq!(value(&out, "logs-out"), "out", "{out:#?}");
    assert_eq!(value(&out, "logs-err"), "err", "{out:#?}");
    assert_eq!(value(&out, "inspect-exit"), "3", "by id prefix\n{out:#?}");
    assert_eq!(value(&out, "web-status"), "running", "{out:#?}");
    assert_ne!(value(&out, "rm-running-rc"), "0", "{out:#?}");
    assert!(out.stdout.lines().any(|l| l == "rm-says-stop"), "{out:#?}");
    assert_eq!(value(&out, "stop-rc"), "0", "{out:#?}");
    let stop_secs: u32 = value(&out, "stop-secs").parse().expect("a number");
    assert!(stop_secs <= 15, "stop took {stop_secs} s\n{out:#?}");
    assert_eq!(value(&out, "web-stopped"), "stopped", "{out:#?}");
    assert_eq!(value(&out, "rm-web-rc"), "0", "{out:#?}");
    assert_eq!(value(&out, "dead-status"), "vmm died", "{out:#?}");
    assert_eq!(value(&out, "rm-dead-rc"), "0", "{out:#?}");
    assert_eq!(value(&out, "rm-job-rc"), "0", "{out:#?}");
    assert_eq!(value(&out, "left-state"), "0", "{out:#?}");
    assert_eq!(value(&out, "left-procs"), "0", "{out:#?}");
}
