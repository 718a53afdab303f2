//! Tier 3: Linux zones booted by zone-vmm inside the KVM testbed. Each test runs one shell
//! script in a fresh testbed and checks what came back; every script ends by reporting what
//! the zones left behind (state directories, sockets, VMM processes).

use zone_tests::{
    assert_has, assert_nothing_left, testbed_run, value, TestbedOutput, REPORT_LEFTOVERS,
};

fn run_in_testbed(script: &str) -> TestbedOutput {
    testbed_run(&format!("{script}\n{REPORT_LEFTOVERS}"), &[])
}

#[test]
fn test_zone_runs_command_stdout_and_exit_status_return() {
    let out = run_in_testbed(
        r#"
zonectl run --bare -- sh -c 'echo "hello from $(hostname)"; echo "kernel=$(uname -r)"; exit 7'
echo "zonectl-exit=$?"
"#,
    );
    assert_has(&out, "hello from zone");
    assert!(value(&out, "kernel").starts_with("6.12"), "{out:#?}");
    assert_eq!(value(&out, "zonectl-exit"), "7", "{out:#?}");
    assert_nothing_left(&out);
}

#[test]
fn test_zone_disk_write_checksum_and_read_only_refused() {
    let out = run_in_testbed(
        r#"
dd if=/dev/zero of=/tmp/rw.img bs=1M count=4 2>/dev/null
dd if=/dev/zero of=/tmp/ro.img bs=1M count=4 2>/dev/null
ro_before=$(sha256sum < /tmp/ro.img)
zonectl run --bare --disk /tmp/rw.img --disk /tmp/ro.img,ro -- sh -c '
  head -c 1048576 /dev/urandom > /tmp/data
  echo "zone-sum=$(sha256sum < /tmp/data | cut -d" " -f1)"
  dd if=/tmp/data of=/dev/vda bs=65536 conv=fsync 2>/dev/null && echo rw-write-ok
  echo "ro-flag=$(cat /sys/block/vdb/ro)"
  if dd if=/tmp/data of=/dev/vdb bs=65536 conv=fsync 2>/dev/null; then
    echo ro-write-succeeded
  else
    echo ro-write-refused
  fi'
echo "zonectl-exit=$?"
echo "host-sum=$(head -c 1048576 /tmp/rw.img | sha256sum | cut -d' ' -f1)"
[ "$(sha256sum < /tmp/ro.img)" = "$ro_before" ] && echo ro-image-unchanged
"#,
    );
    assert_eq!(value(&out, "zonectl-exit"), "0", "{out:#?}");
    assert_has(&out, "rw-write-ok");
    let zone_sum = value(&out, "zone-sum");
    assert_eq!(zone_sum.len(), 64, "{out:#?}");
    assert_eq!(
        zone_sum,
        value(&out, "host-sum"),
        "data on disk differs\n{out:#?}"
    );
    assert_eq!(value(&out, "ro-flag"), "1", "{out:#?}");
    assert_has(&out, "ro-write-refused");
    assert_has(&out, "ro-image-unchanged");
    assert_nothing_left(&out);
}

#[test]
fn test_zone_two_cpus_online() {
    let out = run_in_testbed(
        r#"
zonectl run --bare --cpus 2 -- sh -c 'echo "online=$(cat /sys/devices/system/cpu/online)"; echo "nproc=$(nproc)"'
echo "zonectl-exit=$?"
"#,
    );
    assert_eq!(value(&out, "zonectl-exit"), "0", "{out:#?}");
    assert_eq!(value(&out, "online"), "0-1", "{out:#?}");
    assert_eq!(value(&out, "nproc"), "2", "{out:#?}");
    assert_nothing_left(&out);
}

#[test]
fn test_guest_poweroff_and_reboot_end_vmm_cleanly() {
    // The zone's init is busybox poweroff/reboot itself: no agent, no host-side help. Power-off
    // boots the ELF vmlinux, reboot the bzImage, so both kernel formats boot Linux here.
    let out = run_in_testbed(
        r#"
mkdir -p /run/zones/t
for action in poweroff reboot; do
  kernel=$ZONES_KERNEL
  [ $action = poweroff ] && kernel=$ZONES_VMLINUX
  zone-vmm --kernel "$kernel" --initrd "$ZONES_INITRD" --memory 128M \
    --vsock /run/zones/t/vsock.sock --serial-log /tmp/$action.log \
    --cmdline "console=ttyS0 panic=-1 rdinit=/sbin/$action -- -f"
  echo "$action-exit=$?"
  echo "$action-files=$(ls -A /run/zones/t | wc -l)"
done
grep -q "reboot: Power down" /tmp/poweroff.log && echo poweroff-by-acpi
grep -q "reboot: Restarting system" /tmp/reboot.log && echo reboot-by-guest
rmdir /run/zones/t
"#,
    );
    for action in ["poweroff", "reboot"] {
        assert_eq!(value(&out, &format!("{action}-exit")), "0", "{out:#?}");
        assert_eq!(
            value(&out, &format!("{action}-files")),
            "0",
            "vsock socket left\n{out:#?}"
        );
    }
    assert_has(&out, "poweroff-by-acpi");
    assert_has(&out, "reboot-by-guest");
    assert_nothing_left(&out);
}
