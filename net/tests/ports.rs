//! Port publishing against plain 127.0.0.1 listeners standing in for a zone.

// Test helpers outside #[test] fns: panicking on failure is the point.
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::time::timeout;
use zone_net::ports::{publish, PortError, PortMapping};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const LIMIT: Duration = Duration::from_secs(5);

/// A mapping from an ephemeral 127.0.0.1 port to `zone_port`.
fn mapping(zone_port: u16) -> PortMapping {
    PortMapping {
        host_ip: Some(LOCALHOST),
        host_port: 0,
        zone_port,
    }
}

/// A port nobody listens on (bound once, then closed).
async fn dead_port() -> u16 {
    let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
    listener.local_addr().unwrap().port()
}

async fn read_all(stream: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    timeout(LIMIT, stream.read_to_end(&mut buf))
        .await
        .expect("read within the time limit")
        .unwrap();
    buf
}

#[tokio::test]
async fn test_publish_client_half_close_reply_still_arrives() {
    // The zone answers only after the client's end of stream: the proxy must pass the
    // half-close on and keep the other direction open.
    let zone = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
    let zone_port = zone.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut conn, _) = zone.accept().await.unwrap();
        let mut request = Vec::new();
        conn.read_to_end(&mut request).await.unwrap();
        conn.write_all(&request.to_ascii_uppercase()).await.unwrap();
    });
    let publisher = publish(&[mapping(zone_port)], LOCALHOST).await.unwrap();

    let mut client = TcpStream::connect(publisher.local_addrs()[0])
        .await
        .unwrap();
    client.write_all(b"hello zone").await.unwrap();
    client.shutdown().await.unwrap();

    assert_eq!(read_all(&mut client).await, b"HELLO ZONE");
}

#[tokio::test]
async fn test_publish_zone_half_close_client_data_still_arrives() {
    // The zone speaks first and closes its sending side; the client's data sent afterwards
    // must still reach it.
    let zone = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
    let zone_port = zone.local_addr().unwrap().port();
    let (got_tx, got_rx) = oneshot::channel();
    tokio::spawn(async move {
        let (mut conn, _) = zone.accept().await.unwrap();
        conn.write_all(b"banner").await.unwrap();
        conn.shutdown().await.unwrap();
        let mut request = Vec::new();
        conn.read_to_end(&mut request).await.unwrap();
        got_tx.send(request).unwrap();
    });
    let publisher = publish(&[mapping(zone_port)], LOCALHOST).await.unwrap();

    let mut client = TcpStream::connect(publisher.local_addrs()[0])
        .await
        .unwrap();
    assert_eq!(read_all(&mut client).await, b"banner");
    client.write_all(b"after your eof").await.unwrap();
    client.shutdown().await.unwrap();

    let got = timeout(LIMIT, got_rx).await.unwrap().unwrap();
    assert_eq!(got, b"after your eof");
}

#[tokio::test]
async fn test_publish_port_in_use_refused_naming_port_and_frees_others() {
    let taken = std::net::TcpListener::bind((LOCALHOST, 0)).unwrap();
    let taken_port = taken.local_addr().unwrap().port();
    let free_port = dead_port().await;
    let mappings = [
        PortMapping {
            host_ip: Some(LOCALHOST),
            host_port: free_port,
            zone_port: 80,
        },
        PortMapping {
            host_ip: Some(LOCALHOST),
            host_port: taken_port,
            zone_port: 80,
        },
    ];

    let err = publish(&mappings, LOCALHOST).await.unwrap_err();

    assert!(
        matches!(err, PortError::Bind(addr, _) if addr.port() == taken_port),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{taken_port}")),
        "{err}"
    );
    // The mapping bound before the failure is not left listening.
    TcpListener::bind((LOCALHOST, free_port))
        .await
        .expect("the first port is free again");
}

#[tokio::test]
async fn test_publish_dropped_listener_closed_and_connections_ended() {
    let zone = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
    let zone_port = zone.local_addr().unwrap().port();
    tokio::spawn(async move {
        // Holds every connection open, silent.
        let mut held = Vec::new();
        while let Ok((conn, _)) = zone.accept().await {
            held.push(conn);
        }
    });
    let publisher = publish(&[mapping(zone_port)], LOCALHOST).await.unwrap();
    let host_addr = publisher.local_addrs()[0];
    let mut client = TcpStream::connect(host_addr).await.unwrap();
    client.write_all(b"x").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;

    drop(publisher);

    let refused = TcpStream::connect(host_addr).await;
    assert_eq!(
        refused.unwrap_err().kind(),
        std::io::ErrorKind::ConnectionRefused,
        "the host port still accepts after the publisher was dropped"
    );
    // The proxied connection ends too (end of stream or reset), instead of hanging.
    let mut buf = [0u8; 1];
    let read = timeout(LIMIT, client.read(&mut buf))
        .await
        .expect("the proxied connection was not closed");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
}

#[tokio::test]
async fn test_publish_zone_refuses_connection_closed_others_served() {
    let zone = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
    let zone_port = zone.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = zone.accept().await {
            tokio::spawn(async move {
                conn.write_all(b"served").await.unwrap();
            });
        }
    });
    let publisher = publish(&[mapping(dead_port().await), mapping(zone_port)], LOCALHOST)
        .await
        .unwrap();
    let (refusing, serving) = (publisher.local_addrs()[0], publisher.local_addrs()[1]);

    for _ in 0..2 {
        // Accepted by the proxy, then closed because the zone refuses: no data, no hang.
        let mut client = TcpStream::connect(refusing).await.unwrap();
        let mut buf = Vec::new();
        let read = timeout(LIMIT, client.read_to_end(&mut buf)).await.unwrap();
        assert!(buf.is_empty(), "{read:?}");

        let mut client = TcpStream::connect(serving).await.unwrap();
        assert_eq!(read_all(&mut client).await, b"served");
    }
}

#[tokio::test]
async fn test_publish_parsed_mapping_proxies() {
    let zone = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
    let zone_port = zone.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut conn, _) = zone.accept().await.unwrap();
        conn.write_all(b"hi").await.unwrap();
    });
    let host_port = dead_port().await;
    let mapping: PortMapping = format!("127.0.0.1:{host_port}:{zone_port}/tcp")
        .parse()
        .unwrap();

    let publisher = publish(&[mapping], LOCALHOST).await.unwrap();

    assert_eq!(
        publisher.local_addrs(),
        &[SocketAddr::new(LOCALHOST, host_port)]
    );
    let mut client = TcpStream::connect((LOCALHOST, host_port)).await.unwrap();
    assert_eq!(read_all(&mut client).await, b"hi");
}
