//! Tier 3: `zonectl run IMAGE CMD` with a locally built OCI image, inside the KVM testbed:
//! import, root file system conversion, and the container's config and flags.

use zone_tests::{testbed_run, value};

#[test]
fn test_run_image_output_exit_codes_config_and_overlay() {
    // hack/build packs the busybox test image; the testbed ships it in /zones/images.
    let out = testbed_run(
        r#"
zonectl image import /zones/images/busybox >/dev/null; echo "import=$?"
echo "listed=$(zonectl image ls | grep -c '^busybox:latest ')"
echo "hello=$(zonectl run busybox echo hello)"; echo "hello-exit=$?"
zonectl run busybox sh -c 'exit 7'; echo "exit7=$?"
echo "stdin=$(echo abc | zonectl run -i busybox cat)"
echo "tty=$(zonectl run -t busybox sh -c 'tty >/dev/null && echo yes || echo no' | tr -d '\r')"
echo "no-tty=$(zonectl run busybox sh -c 'tty >/dev/null && echo yes || echo no')"
zonectl run -e GREETING=hi -w /tmp -u nobody busybox \
  sh -c 'echo "flags=$GREETING $(pwd) $(id -u) $PATH"'
img=$(ls /var/lib/zones/rootfs/*.ext4)
before=$(sha256sum < "$img")
echo "write=$(zonectl run busybox sh -c 'echo x > /etc/written && cat /etc/written')"
echo "second-zone=$(zonectl run busybox sh -c 'test -e /etc/written && echo seen || echo fresh')"
[ "$(sha256sum < "$img")" = "$before" ] && echo image-unchanged
zonectl run nosuchimage true 2>/tmp/err; echo "missing-exit=$?"
grep -q 'zonectl image import' /tmp/err && echo missing-says-import
echo "left-state=$(ls -A /run/zones | wc -l)"
"#,
        &[],
    );
    assert_eq!(value(&out, "import"), "0", "{out:#?}");
    assert_eq!(value(&out, "listed"), "1", "{out:#?}");
    assert_eq!(value(&out, "hello"), "hello", "{out:#?}");
    assert_eq!(value(&out, "hello-exit"), "0", "{out:#?}");
    assert_eq!(value(&out, "exit7"), "7", "{out:#?}");
    assert_eq!(value(&out, "stdin"), "abc", "{out:#?}");
    assert_eq!(value(&out, "tty"), "yes", "-t gives a terminal\n{out:#?}");
    assert_eq!(value(&out, "no-tty"), "no", "{out:#?}");
    assert_eq!(
        value(&out, "flags"),
        "hi /tmp 65534 /usr/sbin:/usr/bin:/sbin:/bin",
        "env from flags and image, cwd and user from flags\n{out:#?}"
    );
    assert_eq!(value(&out, "write"), "x", "{out:#?}");
    assert_eq!(
        value(&out, "second-zone"),
        "fresh",
        "writes stay in their zone\n{out:#?}"
    );
    assert!(
        out.stdout.lines().any(|l| l == "image-unchanged"),
        "{out:#?}"
    );
    assert_ne!(value(&out, "missing-exit"), "0", "{out:#?}");
    assert!(
        out.stdout.lines().any(|l| l == "missing-says-import"),
        "{out:#?}"
    );
    assert_eq!(value(&out, "left-state"), "0", "{out:#?}");
}

#[test]
fn test_two_zones_at_once_cannot_see_each_other() {
    let out = testbed_run(
        r#"
zonectl image import /zones/images/busybox >/dev/null
zonectl run busybox true   # builds the root file system once, before the two zones race
vmms() { ps -o comm | grep -c '^zone-vmm'; }
# Zone A leaves a file and a long sleep behind while zone B looks around.
zonectl run busybox sh -c 'echo a > /tmp/secret-a; sleep 30; echo "a-sees=$(ls /tmp | tr "\n" " ")"' > /tmp/a.out &
a=$!
until [ "$(vmms)" -ge 1 ]; do sleep 0.2; done
sleep 5   # A's zone boots and writes its file
zonectl run busybox sh -c 'sleep 3; echo "b-files=$(ls /tmp | tr "\n" " ")"; echo "b-sleeps=$(ps -o comm | grep -c "^sleep")"' > /tmp/b.out &
b=$!
most=0
while kill -0 $b 2>/dev/null; do n=$(vmms); [ "$n" -gt "$most" ] && most=$n; sleep 0.2; done
wait $b; echo "b-exit=$?"
echo "most-vmms-at-once=$most"
wait $a; echo "a-exit=$?"
cat /tmp/a.out /tmp/b.out
"#,
        &[],
    );
    assert_eq!(value(&out, "a-exit"), "0", "{out:#?}");
    assert_eq!(value(&out, "b-exit"), "0", "{out:#?}");
    assert_eq!(
        value(&out, "most-vmms-at-once"),
        "2",
        "A ran while B ran\n{out:#?}"
    );
    assert_eq!(value(&out, "a-sees").trim(), "secret-a", "{out:#?}");
    assert_eq!(
        value(&out, "b-files").trim(),
        "",
        "B sees none of A's files\n{out:#?}"
    );
    assert_eq!(
        value(&out, "b-sleeps"),
        "0",
        "B sees none of A's processes\n{out:#?}"
    );
}
