//! Contract section 11, per IP: past `--max-connections-per-ip` a client
//! gets `ERR server-full` and a graceful close, counted as
//! `rejected_total{reason="per_ip"}` and never as accepted, while another
//! address is still served; a freed place is usable again.

use crate::common::start;
use gateway_tests::{Client, Framing};
use std::net::IpAddr;

#[test]
fn past_the_per_ip_limit_one_address_is_refused_and_another_served() {
    for framing in Framing::ALL {
        let gw = start(framing, &["--max-connections-per-ip", "2"]);
        let here: IpAddr = "127.0.0.1".parse().unwrap();
        let there: IpAddr = "127.0.0.2".parse().unwrap();
        let mut a = Client::connect_from(gw.client_addr(), here, framing);
        let mut b = Client::connect_from(gw.client_addr(), here, framing);
        a.check("PING a", "PONG a");
        b.check("PING b", "PONG b");

        let mut refused = Client::connect_from(gw.client_addr(), here, framing);
        refused.expect("ERR server-full");
        refused.expect_eof();
        drop(refused);

        let mut other = Client::connect_from(gw.client_addr(), there, framing);
        other.check("PING other", "PONG other");
        other.hello("elsewhere");

        let metrics = gw.metrics();
        let rejected =
            |reason| metrics.value("gateway_connections_rejected_total", &[("reason", reason)]);
        assert_eq!(rejected("per_ip"), 1.0);
        assert_eq!(rejected("full"), 0.0);
        assert_eq!(
            metrics.value("gateway_connections_accepted_total", &[]),
            3.0
        );
        assert_eq!(metrics.value("gateway_connections_active", &[]), 3.0);

        // A place freed on the address is usable again.
        a.quit();
        gw.wait_metric_eq("gateway_connections_active", &[], 2.0);
        let mut again = Client::connect_from(gw.client_addr(), here, framing);
        again.check("PING again", "PONG again");
        b.sync();
        other.sync();
    }
}

#[test]
fn without_the_flag_one_address_may_hold_many() {
    let gw = start(Framing::Lines, &["--max-connections", "20"]);
    let mut clients: Vec<Client> = (0..12).map(|_| gw.connect()).collect();
    for client in &mut clients {
        client.check("PING", "PONG");
    }
    assert_eq!(
        gw.metric(
            "gateway_connections_rejected_total",
            &[("reason", "per_ip")]
        ),
        0.0
    );
}
