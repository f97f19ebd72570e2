//! Contract section 3, client commands: the exact answers and `ERR` codes of
//! `HELLO`, `SUB`, `UNSUB`, `PUB`, `PING` and `QUIT`, user and topic syntax,
//! unknown and empty frames, `\r\n` under `lines`, and answers in command
//! order when many commands arrive in one write. Every case runs under both
//! framings.

use crate::common::{msg, publish, start};
use gateway_tests::{Client, Framing, Gateway};

fn session(framing: Framing) -> (Gateway, Client) {
    let gw = start(framing, &[]);
    let client = gw.connect();
    (gw, client)
}

#[test]
fn ping_answers_pong_with_the_payload() {
    for framing in Framing::ALL {
        let (_gw, mut c) = session(framing);
        c.check("PING", "PONG");
        c.check("PING hello", "PONG hello");
        c.check("PING hello world  twice", "PONG hello world  twice");
        c.check("PING  leading", "PONG  leading");
        c.check(b"PING \x00\x01\xff\xfe\rz", b"PONG \x00\x01\xff\xfe\rz");
        c.check("PING PING", "PONG PING");
    }
}

#[test]
fn hello_binds_once() {
    for framing in Framing::ALL {
        let (gw, mut c) = session(framing);
        let id = c.hello("alice");
        assert!(!id.is_empty() && !id.contains(' '), "bad id `{id}`");
        c.check("HELLO alice", "ERR already-identified");
        c.check("HELLO bob", "ERR already-identified");
        c.check("PING", "PONG");

        let mut other = gw.connect();
        other.hello("Az09_.:@-");
        let long = "u".repeat(128);
        let mut third = gw.connect();
        third.hello(&long);
    }
}

#[test]
fn bad_user_names_are_refused_and_the_connection_stays_open() {
    let too_long = format!("HELLO {}", "u".repeat(129));
    let bad: Vec<&[u8]> = vec![
        b"HELLO",
        b"HELLO ",
        b"HELLO  alice",
        b"HELLO alice ",
        b"HELLO a b",
        b"HELLO bad!",
        b"HELLO a/b",
        b"HELLO a#b",
        b"HELLO a\tb",
        b"HELLO caf\xc3\xa9",
        b"HELLO \xff",
        too_long.as_bytes(),
    ];
    for framing in Framing::ALL {
        let (_gw, mut c) = session(framing);
        for frame in &bad {
            c.check(frame, "ERR bad-user");
        }
        c.check("PING", "PONG");
        c.hello("alice");
    }
}

#[test]
fn sub_and_unsub_answer_ok_even_when_repeated() {
    let long = "t".repeat(256);
    for framing in Framing::ALL {
        let (_gw, mut c) = session(framing);
        c.sub("news");
        c.sub("news");
        c.sub("Az09_.:/-");
        c.sub(&long);
        c.check("UNSUB news", "OK UNSUB news");
        c.check("UNSUB news", "OK UNSUB news");
        c.check("UNSUB never-subscribed", "OK UNSUB never-subscribed");
        c.sync();
    }
}

#[test]
fn bad_topics_are_refused_and_the_connection_stays_open() {
    let too_long = "t".repeat(257);
    let bad_topics: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b" news".to_vec(),
        b"news ".to_vec(),
        b"a b".to_vec(),
        b"a@b".to_vec(),
        b"a#b".to_vec(),
        b"a\tb".to_vec(),
        b"caf\xc3\xa9".to_vec(),
        b"\xff".to_vec(),
        too_long.clone().into_bytes(),
    ];
    for framing in Framing::ALL {
        let (_gw, mut c) = session(framing);
        for verb in ["SUB", "UNSUB"] {
            c.check(verb, "ERR bad-topic");
            for topic in &bad_topics {
                let mut frame = format!("{verb} ").into_bytes();
                frame.extend_from_slice(topic);
                c.check(&frame, "ERR bad-topic");
            }
        }
        c.check("PUB", "ERR bad-topic");
        c.check("PUB ", "ERR bad-topic");
        c.check("PUB  payload", "ERR bad-topic");
        c.check("PUB a@b payload", "ERR bad-topic");
        c.check(format!("PUB {too_long} payload"), "ERR bad-topic");
        c.check("PING", "PONG");
        c.sub("still-open");
    }
}

#[test]
fn pub_reaches_every_subscriber_the_publisher_too() {
    for framing in Framing::ALL {
        let (gw, mut a) = session(framing);
        let mut b = gw.connect();
        let mut outsider = gw.connect();
        a.sub("room");
        b.sub("room");
        outsider.sub("other");

        a.send("PUB room hello world");
        a.expect("MSG room hello world");
        b.expect("MSG room hello world");

        b.send("PUB room  two  spaces ");
        a.expect("MSG room  two  spaces ");
        b.expect("MSG room  two  spaces ");

        b.send(publish("room", b"\x00\x7f\xff\rz"));
        a.expect(msg("room", b"\x00\x7f\xff\rz"));
        b.expect(msg("room", b"\x00\x7f\xff\rz"));

        a.check("UNSUB room", "OK UNSUB room");
        b.send("PUB room after-unsub");
        b.expect("MSG room after-unsub");
        a.sync();
        b.sync();
        outsider.sync();
    }
}

#[test]
fn pub_with_empty_payload_still_has_the_space() {
    for framing in Framing::ALL {
        let (gw, mut sub) = session(framing);
        sub.sub("t");
        let mut publisher = gw.connect();
        publisher.send("PUB t ");
        sub.expect("MSG t ");
        publisher.send("PUB t");
        sub.expect("MSG t ");
        publisher.sync();
        sub.sync();
    }
}

#[test]
fn pub_to_a_topic_nobody_holds_answers_nothing() {
    for framing in Framing::ALL {
        let (_gw, mut c) = session(framing);
        c.send("PUB nobody hello");
        c.send("PUB nobody");
        c.sync();
    }
}

#[test]
fn quit_says_bye_then_eof() {
    for framing in Framing::ALL {
        let (_gw, mut c) = session(framing);
        c.hello("leaver");
        c.sub("t");
        c.quit();
    }
}

#[test]
fn unknown_commands_and_empty_frames() {
    let unknown: Vec<&[u8]> = vec![
        b"",
        b"NOPE",
        b"ping",
        b"Ping",
        b"hello alice",
        b"sub t",
        b"PINGX",
        b"PIN",
        b" PING",
        b"PONG",
        b"MSG t x",
        b"PUSH x",
        b"KICK admin",
        b"OK",
        b"BYE",
        b"ERR x",
        b"\xff\xfe",
        b"\x00",
    ];
    for framing in Framing::ALL {
        let (_gw, mut c) = session(framing);
        for frame in &unknown {
            c.check(frame, "ERR unknown-command");
        }
        c.check("PING", "PONG");
    }
}

#[test]
fn lines_framing_drops_one_cr_before_lf() {
    let (_gw, mut c) = session(Framing::Lines);
    c.send_raw(b"\n");
    c.expect("ERR unknown-command");
    c.send_raw(b"\r\n");
    c.expect("ERR unknown-command");
    c.send_raw(b"PING\r\n");
    c.expect("PONG");
    c.send_raw(b"PING a\r\n");
    c.expect("PONG a");
    c.send_raw(b"PING a\r\r\n");
    c.expect("PONG a\r");
    c.send_raw(b"PING a\rb\n");
    c.expect("PONG a\rb");
    c.send_raw(b"PING\rX\n");
    c.expect("ERR unknown-command");
    c.send_raw(b"SUB t\r\n");
    c.expect("OK SUB t");
    c.send_raw(b"PUB t x\r\n");
    c.expect("MSG t x");
    c.send_raw(b"QUIT\r\n");
    c.expect("BYE");
    c.expect_eof();
}

#[test]
fn length_framing_keeps_cr_and_lf_as_bytes() {
    let (_gw, mut c) = session(Framing::Length);
    c.check("", "ERR unknown-command");
    c.check("PING\r", "ERR unknown-command");
    c.check("PING a\r\n", "PONG a\r\n");
    c.check("PING \n", "PONG \n");
    c.check("SUB t\r", "ERR bad-topic");
}

#[test]
fn answers_come_in_command_order_when_pipelined() {
    for framing in Framing::ALL {
        let (_gw, mut c) = session(framing);
        let mut frames: Vec<Vec<u8>> = Vec::new();
        let mut replies: Vec<Vec<u8>> = Vec::new();
        for i in 0..400 {
            frames.push(format!("PING p{i}").into_bytes());
            replies.push(format!("PONG p{i}").into_bytes());
            frames.push(format!("SUB t{i}").into_bytes());
            replies.push(format!("OK SUB t{i}").into_bytes());
            frames.push(format!("PUB nobody{i} m{i}").into_bytes());
            frames.push(format!("nope{i}").into_bytes());
            replies.push(b"ERR unknown-command".to_vec());
            frames.push(format!("UNSUB t{i}").into_bytes());
            replies.push(format!("OK UNSUB t{i}").into_bytes());
            frames.push(b"HELLO bad!".to_vec());
            replies.push(b"ERR bad-user".to_vec());
        }
        c.send_all(&frames);
        for (i, reply) in replies.iter().enumerate() {
            let got = c.recv();
            assert_eq!(
                gateway_tests::show(&got),
                gateway_tests::show(reply),
                "{framing:?}: answer {i} out of order"
            );
        }
        c.sync();
    }
}
