//! What the tests that drive Debian's containerd in the testbed share (`ctr` and CRI): the
//! private containerd started with `hack/containerd-zone` before a test's script, and the
//! check after it that nothing was left behind.

use crate::{repo_root, testbed_run_with, value, TestbedOutput};

/// Starts the private containerd in `$C` (the shim logs to /tmp/shim.log), names a missing
/// tool, defines `count NAME` (processes whose name starts with NAME).
const START: &str = r#"
export ZONES_SHIM_LOG=/tmp/shim.log
C=/tmp/ctrd
for tool in containerd ctr containerd-shim-zone-v1 $NEEDS; do
  command -v $tool >/dev/null || echo "missing=$tool (run hack/setup and hack/build)"
done
sh /zones/test/containerd-zone start $C || echo containerd-start-failed
eval "$(sh /zones/test/containerd-zone env $C)"
count() { ps -o comm | grep -c "^$1"; }
"#;

/// Imports the busybox and pod sandbox ("pause") test images into CRI's `k8s.io` namespace
/// (prints `import-failed=IMAGE` when one fails).
pub const IMPORT_CRI_IMAGES: &str = r#"
for image in busybox pause; do
  tar -C /zones/images/$image -cf /tmp/$image.tar .
  ctr -n k8s.io images import /tmp/$image.tar >/tmp/import.out 2>&1 ||
    { echo "import-failed=$image"; cat /tmp/import.out; }
done
# CRI resolves short names as the kubelet does (busybox -> docker.io/library/busybox:latest).
ctr -n k8s.io images tag busybox:latest docker.io/library/busybox:latest >/dev/null
"#;

/// Reports what is left (read by [`assert_nothing_left`]) and the logs; stops containerd.
const LEFTOVERS: &str = r#"
sleep 1
echo "left-shim=$(count containerd-shim)"
echo "left-vmm=$(count zone-vmm)"
echo "left-swtpm=$(count swtpm)"
echo "left-mounts=$(grep -c -e /tmp/ctrd -e /run/containerd /proc/mounts)"
echo "left-sockets=$(ls -A /run/containerd/s 2>/dev/null | wc -l)"
echo "left-state=$(ls -A /run/zones 2>/dev/null | wc -l)"
sh /zones/test/containerd-zone stop $C
echo "--- shim log" >&2; cat /tmp/shim.log >&2
echo "--- containerd log" >&2; grep -v 'level=info' $C/containerd.log | tail -n 40 >&2
"#;

/// The test's side of a containerd run: what it sets before containerd starts, further
/// tools it needs, and its script.
#[derive(Debug, Clone, Copy)]
pub struct ContainerdScript<'a> {
    /// Shell lines run before containerd starts (exports its config reads).
    pub settings: &'a str,
    /// Tools beyond containerd, ctr and the shim, space-separated.
    pub needs: &'a str,
    pub script: &'a str,
}

/// Runs a script in the testbed (with `--containerd`) between the start of a private
/// containerd and the report of what is left.
pub fn run_with_containerd(test: &ContainerdScript, timeout_secs: u32) -> TestbedOutput {
    let ContainerdScript {
        settings,
        needs,
        script,
    } = test;
    let script = format!("{settings}\nNEEDS='{needs}'\n{START}{script}{LEFTOVERS}");
    testbed_run_with(
        &script,
        &[(
            repo_root().join("hack/containerd-zone"),
            "/zones/test/containerd-zone",
        )],
        &["--containerd", "--timeout", &timeout_secs.to_string()],
    )
}

/// Asserts that no shim, VMM, swtpm, mount, socket or zone state was left, and that the
/// testbed had every tool.
///
/// # Panics
///
/// When something was left or missing, showing the whole output.
pub fn assert_nothing_left(out: &TestbedOutput) {
    assert!(
        !out.stdout.contains("missing="),
        "the testbed lacks a tool\n{out:#?}"
    );
    for key in [
        "left-shim",
        "left-vmm",
        "left-swtpm",
        "left-mounts",
        "left-sockets",
        "left-state",
    ] {
        assert_eq!(value(out, key), "0", "{key}\n{out:#?}");
    }
}
