//! containerd 2.3's start handshake. containerd 1.6–2.2 write the runtime options (a protobuf
//! `Any`, or nothing) to `start`'s stdin and read a plain address back; 2.3 writes a
//! `containerd.runtime.bootstrap.v1.BootstrapParams` instead and first tries to read a
//! `BootstrapResult` from stdout, falling back to the plain address. Both shapes are protobuf,
//! so stdin counts as bootstrap parameters only when it decodes as such *and* names the
//! instance and namespace `start` was given on its command line: an `Any` decodes too, but
//! with its type URL where the instance id would be.

use prost::Message;

/// The fields of `BootstrapParams` the shim uses (others, like `extensions`, are skipped).
#[derive(Clone, PartialEq, Message)]
pub struct BootstrapParams {
    /// The container or sandbox id (`-id`).
    #[prost(string, tag = "1")]
    pub instance_id: String,
    /// The containerd namespace (`-namespace`).
    #[prost(string, tag = "2")]
    pub namespace: String,
    /// containerd's ttrpc address, where events go (also `TTRPC_ADDRESS`).
    #[prost(string, tag = "5")]
    pub containerd_ttrpc_address: String,
    /// containerd's gRPC address (also `-address`).
    #[prost(string, tag = "6")]
    pub containerd_grpc_address: String,
}

/// The answer to [`BootstrapParams`].
#[derive(Clone, PartialEq, Message)]
pub struct BootstrapResult {
    /// The shim protocol version: 2, the task API v2 (containerd 1.6 and 1.7 speak no other).
    #[prost(int32, tag = "1")]
    pub version: i32,
    /// Where the shim listens.
    #[prost(string, tag = "2")]
    pub address: String,
    /// `ttrpc`.
    #[prost(string, tag = "3")]
    pub protocol: String,
}

/// Bootstrap parameters from `start`'s stdin, or `None` when stdin holds runtime options
/// (containerd before 2.3), nothing, or something else.
pub fn params_from_stdin(stdin: &[u8], id: &str, namespace: &str) -> Option<BootstrapParams> {
    let params = BootstrapParams::decode(stdin).ok()?;
    (params.instance_id == id && params.namespace == namespace).then_some(params)
}

/// What `start` prints: the plain address, or a `BootstrapResult` when containerd sent
/// bootstrap parameters.
pub fn start_reply(address: &str, bootstrapped: bool) -> Vec<u8> {
    if !bootstrapped {
        return address.as_bytes().to_vec();
    }
    BootstrapResult {
        version: 2,
        address: address.to_string(),
        protocol: "ttrpc".to_string(),
    }
    .encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(id: &str, namespace: &str) -> Vec<u8> {
        BootstrapParams {
            instance_id: id.into(),
            namespace: namespace.into(),
            containerd_ttrpc_address: "/run/containerd/containerd.sock.ttrpc".into(),
            containerd_grpc_address: "/run/containerd/containerd.sock".into(),
        }
        .encode_to_vec()
    }

    #[test]
    fn test_params_for_this_instance_accepted() {
        let got = params_from_stdin(&params("t1", "default"), "t1", "default").unwrap();

        assert_eq!(
            got.containerd_ttrpc_address,
            "/run/containerd/containerd.sock.ttrpc"
        );
        assert_eq!(
            got.containerd_grpc_address,
            "/run/containerd/containerd.sock"
        );
    }

    #[test]
    fn test_params_for_another_instance_or_namespace_ignored() {
        assert_eq!(
            params_from_stdin(&params("t2", "default"), "t1", "default"),
            None
        );
        assert_eq!(
            params_from_stdin(&params("t1", "k8s.io"), "t1", "default"),
            None
        );
    }

    #[test]
    fn test_runtime_options_any_empty_and_garbage_are_not_params() {
        // A protobuf Any: type_url (1) and value (2), as containerd 1.6–2.2 send.
        let any = protobuf::well_known_types::any::Any {
            type_url: "type.googleapis.com/runtimeoptions.v1.Options".into(),
            value: vec![0x0a, 0x03, b'a', b'b', b'c'],
            ..Default::default()
        };
        let any = protobuf::Message::write_to_bytes(&any).unwrap();

        assert_eq!(params_from_stdin(&any, "t1", "default"), None);
        assert_eq!(params_from_stdin(b"", "t1", "default"), None);
        assert_eq!(params_from_stdin(&[0xff; 7], "t1", "default"), None);
    }

    #[test]
    fn test_reply_plain_address_or_bootstrap_result() {
        let address = "unix:///run/containerd/s/abc";

        assert_eq!(start_reply(address, false), address.as_bytes());
        let result = BootstrapResult::decode(start_reply(address, true).as_slice()).unwrap();
        assert_eq!(
            (
                result.version,
                result.address.as_str(),
                result.protocol.as_str()
            ),
            (2, address, "ttrpc")
        );
    }

    #[test]
    fn test_plain_address_is_not_a_bootstrap_result() {
        // containerd 2.3 tries BootstrapResult first: a plain address must not decode as one.
        assert!(BootstrapResult::decode(&b"unix:///run/containerd/s/0123abcd"[..]).is_err());
    }
}
