//! The requests one engine sends in its main flows, decoded and snapshotted.
//!
//! The engine runs the "tag" topology ([`kstreams_tests::harness::tagged`]) against a two-broker
//! simulated cluster; the harness records every frame that crosses the engine's connections
//! ([`Harness::record_wire`]). Each request frame is decoded here with `kafka-protocol` alone
//! (length prefix, `RequestHeader` at `ApiKey::request_header_version`, body with
//! `RequestKind::decode`), and rendered as one block: API, version, correlation id, client id,
//! the body's `Debug` with embedded bytes decoded (record batches, consumer protocol
//! subscription and assignment) and volatile values named (member ids, producer ids, the crate
//! version), plus a one-line summary of the answer. The snapshots under `snapshots/` are
//! therefore a readable record of the protocol flow:
//!
//! - `engine_requests__startup_until_first_commit.snap`: from the first connection up to the
//!   first accepted OffsetCommit;
//! - `engine_requests__clean_close.snap`: from `Engine::close` to `NotRunning` (final commit,
//!   LeaveGroup), then the connections of the whole run (node, opened, closed, requests).
//!
//! Requests between the two (processing one more record per partition) are not snapshotted;
//! the ordering rules below check them too.
//!
//! Besides the snapshots, the flow's ordering rules are asserted in code: every connection
//! starts with ApiVersions, no Produce goes out before InitProducerId was answered, an
//! OffsetCommit only covers input whose output the brokers already acknowledged, and LeaveGroup
//! is the last group request of a close.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use bytes::{Buf, Bytes};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::{
    ApiKey, ConsumerProtocolAssignment, ConsumerProtocolSubscription, RequestHeader, RequestKind,
    ResponseHeader, ResponseKind,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use kafka_protocol::records::RecordBatchDecoder;
use kstreams_core::engine::{ConnectionId, EngineConfig, EngineState, Event};
use kstreams_tests::harness::tagged::*;
use kstreams_tests::harness::{Harness, WireEvent};

const PARTITIONS: i32 = 2;
const BROKERS: usize = 2;
/// Input records per partition before the engine starts.
const FIRST_INPUT: i64 = 2;
/// Input records per partition appended after the first commit (processed, then closed).
const SECOND_INPUT: i64 = 1;

/// One request frame the engine sent, decoded.
struct SentRequest {
    /// Position in the wire log.
    pos: usize,
    at: i64,
    node: i32,
    /// Ordinal of the connection (over all connections of the run, from 1).
    conn: usize,
    /// Ordinal of the request on its connection (from 0).
    nth_on_conn: usize,
    api: ApiKey,
    version: i16,
    header: RequestHeader,
    body: RequestKind,
    answer: Option<Answer>,
}

/// The response to a [`SentRequest`].
struct Answer {
    pos: usize,
    at: i64,
    body: ResponseKind,
}

/// One connection of the run.
struct ConnInfo {
    node: i32,
    opened_at: i64,
    closed_at: Option<i64>,
    requests: usize,
}

/// Splits `bytes` into frames (length prefix kept off).
fn frames(mut bytes: Bytes) -> Vec<Bytes> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        assert!(bytes.len() >= 4, "truncated length prefix");
        let len = usize::try_from(bytes.get_i32()).expect("non-negative frame length");
        assert!(bytes.len() >= len, "truncated frame");
        out.push(bytes.split_to(len));
    }
    out
}

/// Decodes the wire log: every request with its answer, in sending order, and the connections
/// (in opening order).
fn decode_wire(wire: &[WireEvent]) -> (Vec<SentRequest>, Vec<ConnInfo>) {
    let mut requests: Vec<SentRequest> = Vec::new();
    let mut infos: Vec<ConnInfo> = Vec::new();
    // socket → (connection ordinal, requests sent on it so far)
    let mut open: BTreeMap<ConnectionId, (usize, usize)> = BTreeMap::new();
    let mut conns = 0;
    // (connection ordinal, correlation id) → index into `requests`
    let mut waiting: BTreeMap<(usize, i32), usize> = BTreeMap::new();
    for (pos, event) in wire.iter().enumerate() {
        match event {
            WireEvent::Connected {
                at,
                connection,
                broker,
            } => {
                conns += 1;
                open.insert(*connection, (conns, 0));
                infos.push(ConnInfo {
                    node: *broker,
                    opened_at: *at,
                    closed_at: None,
                    requests: 0,
                });
            }
            WireEvent::Disconnected { at, connection, .. } => {
                if let Some((conn, sent)) = open.remove(connection) {
                    let info = &mut infos[conn - 1];
                    info.closed_at = Some(*at);
                    info.requests = sent;
                }
            }
            WireEvent::Sent {
                at,
                connection,
                broker,
                bytes,
            } => {
                let (conn, sent) = open
                    .get_mut(connection)
                    .expect("sent on an open connection");
                for mut frame in frames(bytes.clone()) {
                    let mut peek = frame.clone();
                    let api = ApiKey::try_from(peek.get_i16()).expect("known api key");
                    let version = peek.get_i16();
                    let header =
                        RequestHeader::decode(&mut frame, api.request_header_version(version))
                            .expect("request header");
                    let body = RequestKind::decode(api, &mut frame, version).expect("body");
                    assert!(frame.is_empty(), "{api:?} v{version}: bytes after the body");
                    waiting.insert((*conn, header.correlation_id), requests.len());
                    requests.push(SentRequest {
                        pos,
                        at: *at,
                        node: *broker,
                        conn: *conn,
                        nth_on_conn: *sent,
                        api,
                        version,
                        header,
                        body,
                        answer: None,
                    });
                    *sent += 1;
                }
            }
            WireEvent::Received {
                at,
                connection,
                bytes,
                ..
            } => {
                let (conn, _) = open[connection];
                let mut frame = frames(bytes.clone()).pop().expect("one frame");
                let correlation_id = frame.clone().get_i32();
                let index = waiting
                    .remove(&(conn, correlation_id))
                    .expect("a response answers a request of its connection");
                let request = &mut requests[index];
                let api = request.api;
                ResponseHeader::decode(&mut frame, api.response_header_version(request.version))
                    .expect("response header");
                let body = ResponseKind::decode(api, &mut frame, request.version).expect("body");
                assert!(frame.is_empty(), "{api:?} response: bytes after the body");
                request.answer = Some(Answer { pos, at: *at, body });
            }
        }
    }
    for (conn, sent) in open.values() {
        infos[conn - 1].requests = *sent;
    }
    (requests, infos)
}

/// Names for values the simulator or the engine generates (member ids, producer ids), so the
/// snapshots say what they are rather than their bytes.
#[derive(Default)]
struct Names {
    members: Vec<String>,
    producers: Vec<i64>,
}

impl Names {
    fn learn(&mut self, requests: &[SentRequest]) {
        for r in requests {
            match r.answer.as_ref().map(|a| &a.body) {
                Some(ResponseKind::JoinGroup(j)) => {
                    let id = j.member_id.to_string();
                    if !id.is_empty() && !self.members.contains(&id) {
                        self.members.push(id);
                    }
                }
                Some(ResponseKind::InitProducerId(i))
                    if i.producer_id.0 >= 0 && !self.producers.contains(&i.producer_id.0) =>
                {
                    self.producers.push(i.producer_id.0);
                }
                _ => {}
            }
        }
    }

    fn producer(&self, id: i64) -> String {
        match self.producers.iter().position(|&p| p == id) {
            Some(i) => format!("<producer-{}>", i + 1),
            None => id.to_string(),
        }
    }

    fn apply(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for (i, id) in self.members.iter().enumerate() {
            text = text.replace(id, &format!("<member-{}>", i + 1));
        }
        for (i, id) in self.producers.iter().enumerate() {
            text = text.replace(
                &format!("ProducerId({id})"),
                &format!("<producer-{}>", i + 1),
            );
        }
        text
    }
}

/// A readable text of `bytes`: UTF-8 if it is, else hex.
fn show_bytes(bytes: Option<&Bytes>) -> String {
    match bytes {
        None => "null".into(),
        Some(b) => match std::str::from_utf8(b) {
            Ok(s) => format!("{s:?}"),
            Err(_) => format!(
                "0x{}",
                b.iter().map(|x| format!("{x:02x}")).collect::<String>()
            ),
        },
    }
}

/// Our consumer protocol `user_data`, decoded independently of the engine's decoder:
/// `version:u8 tasks` (v1), then `held:tasks` (v2 subscriptions, v2 assignments: standbys),
/// then for v3 subscriptions `process:i16-string offsets:(count:i32 {subtopology:i32
/// partition:i32 sum:i64}*)` and for v2 assignments `followup_ms:i32`. Which one a v2 is
/// (held or standbys) the caller says with `assignment`.
fn show_user_data(data: Option<&Bytes>, assignment: bool) -> String {
    let Some(data) = data else {
        return "null".into();
    };
    let undecodable = || format!("undecodable {}", show_bytes(Some(data)));
    let mut b = data.clone();
    let tasks = |b: &mut Bytes| -> Option<Vec<String>> {
        if b.remaining() < 4 {
            return None;
        }
        let count = b.get_i32();
        let mut tasks = Vec::new();
        for _ in 0..count {
            if b.remaining() < 8 {
                return None;
            }
            tasks.push(format!("{}_{}", b.get_i32(), b.get_i32()));
        }
        Some(tasks)
    };
    if b.remaining() < 1 {
        return undecodable();
    }
    let version = b.get_u8();
    let Some(first) = tasks(&mut b) else {
        return undecodable();
    };
    let mut shown = format!("v{version} tasks [{}]", first.join(", "));
    if version >= 2 {
        let Some(second) = tasks(&mut b) else {
            return undecodable();
        };
        let name = if assignment { "standbys" } else { "held" };
        shown.push_str(&format!(" {name} [{}]", second.join(", ")));
    }
    if assignment && version >= 2 {
        if b.remaining() < 4 {
            return undecodable();
        }
        shown.push_str(&format!(" followup_ms {}", b.get_i32()));
    }
    if !assignment && version >= 3 {
        if b.remaining() < 2 {
            return undecodable();
        }
        let len = b.get_i16();
        let Ok(len) = usize::try_from(len) else {
            return undecodable();
        };
        if b.remaining() < len {
            return undecodable();
        }
        let process = b.split_to(len);
        if b.remaining() < 4 {
            return undecodable();
        }
        let count = b.get_i32();
        let mut offsets = Vec::new();
        for _ in 0..count {
            if b.remaining() < 16 {
                return undecodable();
            }
            offsets.push(format!("{}_{}={}", b.get_i32(), b.get_i32(), b.get_i64()));
        }
        shown.push_str(&format!(
            " process {:?} offsets [{}]",
            String::from_utf8_lossy(&process),
            offsets.join(", ")
        ));
    }
    if b.has_remaining() {
        return undecodable();
    }
    shown
}

/// Embedded consumer protocol bytes: `version:i16` then the message.
fn embedded_version(bytes: &Bytes) -> (i16, Bytes) {
    let mut b = bytes.clone();
    let version = b.get_i16();
    (version, b)
}

fn show_subscription(bytes: &Bytes) -> String {
    let (version, mut b) = embedded_version(bytes);
    let s = ConsumerProtocolSubscription::decode(&mut b, version).expect("subscription");
    assert!(b.is_empty(), "bytes after the subscription");
    let owned: Vec<String> = s
        .owned_partitions
        .iter()
        .map(|t| format!("{}{:?}", &*t.topic, t.partitions))
        .collect();
    format!(
        "ConsumerProtocolSubscription v{version} {{ topics: {:?}, owned_partitions: [{}], \
         generation_id: {}, rack_id: {:?}, user_data: {} }}",
        s.topics.iter().map(|t| t.to_string()).collect::<Vec<_>>(),
        owned.join(", "),
        s.generation_id,
        s.rack_id.as_deref(),
        show_user_data(s.user_data.as_ref(), false),
    )
}

fn show_assignment(bytes: &Bytes) -> String {
    if bytes.is_empty() {
        return "(empty)".into();
    }
    let (version, mut b) = embedded_version(bytes);
    let a = ConsumerProtocolAssignment::decode(&mut b, version).expect("assignment");
    assert!(b.is_empty(), "bytes after the assignment");
    let assigned: Vec<String> = a
        .assigned_partitions
        .iter()
        .map(|t| format!("{}{:?}", &*t.topic, t.partitions))
        .collect();
    format!(
        "ConsumerProtocolAssignment v{version} {{ assigned_partitions: [{}], user_data: {} }}",
        assigned.join(", "),
        show_user_data(a.user_data.as_ref(), true),
    )
}

/// One record batch of a Produce request, summarised.
fn show_batch(bytes: &Bytes, names: &Names) -> Vec<String> {
    let mut b = bytes.clone();
    let set = RecordBatchDecoder::decode(&mut b).expect("record batch");
    assert!(b.is_empty(), "one batch per partition");
    let mut lines = Vec::new();
    if let Some(first) = set.records.first() {
        lines.push(format!(
            "batch v{}, compression {:?}: {} records, producer {} epoch {}, transactional {}, \
             sequences {}..={}",
            set.version,
            set.compression,
            set.records.len(),
            names.producer(first.producer_id),
            first.producer_epoch,
            first.transactional,
            first.sequence,
            set.records.last().map_or(first.sequence, |r| r.sequence),
        ));
    }
    for r in &set.records {
        let headers = if r.headers.is_empty() {
            String::new()
        } else {
            format!(" headers {:?}", r.headers)
        };
        lines.push(format!(
            "  offset delta {}: key {} value {} timestamp T0{:+}{headers}",
            r.offset,
            show_bytes(r.key.as_ref()),
            show_bytes(r.value.as_ref()),
            r.timestamp - T0,
        ));
    }
    lines
}

/// The body's `Debug`, with embedded bytes replaced by references to decoded summaries that
/// follow it.
fn show_body(body: &RequestKind, names: &Names) -> String {
    let mut extra: Vec<String> = Vec::new();
    let mut body = body.clone();
    match &mut body {
        RequestKind::ApiVersions(r) => {
            assert_eq!(&*r.client_software_version, env!("CARGO_PKG_VERSION"));
            r.client_software_version = StrBytes::from_static_str("<crate version>");
        }
        RequestKind::JoinGroup(r) => {
            for (i, p) in r.protocols.iter_mut().enumerate() {
                extra.push(format!("metadata #{i}: {}", show_subscription(&p.metadata)));
                p.metadata = Bytes::from(format!("<metadata #{i}>"));
            }
        }
        RequestKind::SyncGroup(r) => {
            for (i, a) in r.assignments.iter_mut().enumerate() {
                extra.push(format!(
                    "assignment #{i}: {}",
                    show_assignment(&a.assignment)
                ));
                a.assignment = Bytes::from(format!("<assignment #{i}>"));
            }
        }
        RequestKind::Produce(r) => {
            let mut n = 0;
            for t in &mut r.topic_data {
                for p in &mut t.partition_data {
                    if let Some(records) = p.records.take() {
                        extra.push(format!("batch #{n} ({}-{}):", &*t.name, p.index));
                        extra.extend(show_batch(&records, names));
                        p.records = Some(Bytes::from(format!("<batch #{n}>")));
                        n += 1;
                    }
                }
            }
        }
        _ => {}
    }
    let mut text: String = format!("{body:#?}")
        .lines()
        .filter(|l| l.trim() != "unknown_tagged_fields: {},")
        .collect::<Vec<_>>()
        .join("\n");
    for line in extra {
        text.push('\n');
        text.push_str(&line);
    }
    names.apply(&text)
}

/// The non-zero error codes anywhere in a response, by name.
fn show_answer(answer: Option<&Answer>, names: &Names) -> String {
    let Some(answer) = answer else {
        return "no answer".into();
    };
    let debug = format!("{:?}", answer.body);
    let mut errors = BTreeSet::new();
    for part in debug.split("error_code: ").skip(1) {
        let code: String = part
            .chars()
            .take_while(|c| *c == '-' || c.is_ascii_digit())
            .collect();
        if let Ok(code) = code.parse::<i16>()
            && code != 0
        {
            errors.insert(match ResponseError::try_from_code(code) {
                Some(e) => format!("{e:?}"),
                None => format!("error {code}"),
            });
        }
    }
    let detail = match &answer.body {
        ResponseKind::JoinGroup(j) if j.error_code == 0 => format!(
            ", generation {}, member_id {}, leader {}, {} members",
            j.generation_id,
            j.member_id,
            j.leader,
            j.members.len()
        ),
        ResponseKind::JoinGroup(j) => format!(", member_id {}", j.member_id),
        ResponseKind::InitProducerId(i) => format!(
            ", producer_id {}, epoch {}",
            i.producer_id.0, i.producer_epoch
        ),
        ResponseKind::SyncGroup(s) => format!(", {}", show_assignment(&s.assignment)),
        ResponseKind::Fetch(f) => {
            let parts: Vec<String> = f
                .responses
                .iter()
                .flat_map(|t| {
                    t.partitions.iter().map(move |p| {
                        let n = p
                            .records
                            .clone()
                            .map(|mut b| {
                                RecordBatchDecoder::decode_all(&mut b)
                                    .map(|sets| sets.iter().map(|s| s.records.len()).sum())
                                    .unwrap_or(0)
                            })
                            .unwrap_or(0usize);
                        format!("{}-{}: {n} records", &*t.topic, p.partition_index)
                    })
                })
                .collect();
            format!(", {}", parts.join(", "))
        }
        _ => String::new(),
    };
    let status = if errors.is_empty() {
        "ok".to_owned()
    } else {
        errors.into_iter().collect::<Vec<_>>().join(", ")
    };
    names.apply(&format!(
        "answered at T0+{} ms: {status}{detail}",
        answer.at - T0
    ))
}

/// The simulated broker a connection reaches (a bootstrap connection reaches one too).
fn show_node(node: i32) -> String {
    format!("broker {node}")
}

/// One line per connection: which node, when it opened and closed, how many requests it
/// carried.
fn render_connections(conns: &[ConnInfo]) -> String {
    let mut out = String::from("connections of the whole run:\n");
    for (i, c) in conns.iter().enumerate() {
        let closed = c.closed_at.map_or("still open".to_owned(), |t| {
            format!("closed at T0+{} ms", t - T0)
        });
        let _ = writeln!(
            out,
            "connection {}: {}, opened at T0+{} ms, {closed}, {} requests",
            i + 1,
            show_node(c.node),
            c.opened_at - T0,
            c.requests
        );
    }
    out
}

/// The snapshot text of `requests`: one block per request; a body equal to the previous one of
/// the same API on the same connection is not repeated.
fn render(requests: &[&SentRequest], names: &Names) -> String {
    let mut out = String::new();
    let mut last_body: BTreeMap<(usize, i16), (usize, String)> = BTreeMap::new();
    for (i, r) in requests.iter().enumerate() {
        let node = show_node(r.node);
        let _ = writeln!(
            out,
            "#{i} T0+{} ms, {node}, connection {}: {:?} v{} correlation_id {} client_id {:?}",
            r.at - T0,
            r.conn,
            r.api,
            r.version,
            r.header.correlation_id,
            r.header.client_id.as_deref().unwrap_or("<null>"),
        );
        let body = show_body(&r.body, names);
        let key = (r.conn, r.api as i16);
        match last_body.get(&key) {
            Some((j, previous)) if *previous == body => {
                let _ = writeln!(out, "(body as #{j})");
            }
            _ => {
                let _ = writeln!(out, "{body}");
            }
        }
        last_body.insert(key, (i, body));
        let _ = writeln!(out, "=> {}", show_answer(r.answer.as_ref(), names));
        out.push('\n');
    }
    out
}

fn config() -> EngineConfig {
    let mut c = flow_config();
    c.bootstrap_servers = vec!["sim-0:9092".into(), "sim-1:9093".into()];
    // Long enough that heartbeats and a few fetches happen before the first commit.
    c.commit_interval = kstreams_core::time::Duration::from_millis(2_500);
    c.fetch.max_wait = kstreams_core::time::Duration::from_millis(500);
    c
}

/// Everything one run produced.
struct Run {
    requests: Vec<SentRequest>,
    /// Index into `requests` of the first request sent after `Engine::close`.
    close_from: usize,
    names: Names,
    connections: Vec<ConnInfo>,
    /// The group's committed offsets per input partition at the end.
    committed: Vec<Option<i64>>,
    state: EngineState,
}

fn run() -> Run {
    let mut sim = cluster(BROKERS, PARTITIONS);
    produce_all(&mut sim, PARTITIONS, FIRST_INPUT);
    let mut h = Harness::new(sim, T0);
    let audit = install_audit(&mut h, PARTITIONS, PARTITIONS);
    let e = h.add(engine(config(), h.now));
    h.record_wire(e);

    let done = h.run_until(30_000, |h| {
        h.engines[e]
            .events
            .iter()
            .any(|(_, ev)| matches!(ev, Event::Committed(_)))
    });
    assert_run(&h, done);
    assert!(all_committed(&h.sim, &[FIRST_INPUT; PARTITIONS as usize]));

    // More input, processed and acknowledged but not committed yet when the close starts.
    let total = FIRST_INPUT + SECOND_INPUT;
    for p in 0..PARTITIONS {
        h.sim
            .produce_direct(INPUT, p, input_records(p, FIRST_INPUT, SECOND_INPUT))
            .expect("produce");
    }
    let done = h.run_until(30_000, |h| {
        outputs(&h.sim, PARTITIONS as usize)
            .iter()
            .all(|o| o.len() as i64 == total)
    });
    assert_run(&h, done);
    assert!(
        all_committed(&h.sim, &[FIRST_INPUT; PARTITIONS as usize]),
        "the interval commit came before the close: the close would have nothing to commit"
    );
    let close_wire = h.engines[e].wire.as_ref().map_or(0, Vec::len);
    h.close_engine(e);
    let done = h.run_until(30_000, |h| {
        h.engines[e].engine.state() == EngineState::NotRunning
    });
    assert_run(&h, done);
    audit
        .borrow()
        .assert_complete(&[total; PARTITIONS as usize]);
    assert_exactly_once(&h.sim, &[total; PARTITIONS as usize]);

    let wire = h.engines[e].wire.take().expect("recorded");
    let (requests, connections) = decode_wire(&wire);
    let close_from = requests
        .iter()
        .position(|r| r.pos >= close_wire)
        .expect("requests after close");
    let mut names = Names::default();
    names.learn(&requests);
    Run {
        close_from,
        names,
        connections,
        committed: (0..PARTITIONS).map(|p| committed(&h.sim, p)).collect(),
        state: h.engines[e].engine.state(),
        requests,
    }
}

impl Run {
    /// The requests up to the first OffsetCommit (included).
    fn startup(&self) -> Vec<&SentRequest> {
        let end = self
            .requests
            .iter()
            .position(|r| r.api == ApiKey::OffsetCommit)
            .expect("an OffsetCommit");
        self.requests[..=end].iter().collect()
    }

    /// The requests sent after `Engine::close`.
    fn close(&self) -> Vec<&SentRequest> {
        self.requests[self.close_from..].iter().collect()
    }
}

fn is_group_api(api: ApiKey) -> bool {
    matches!(
        api,
        ApiKey::FindCoordinator
            | ApiKey::JoinGroup
            | ApiKey::SyncGroup
            | ApiKey::Heartbeat
            | ApiKey::LeaveGroup
            | ApiKey::OffsetFetch
            | ApiKey::OffsetCommit
    )
}

fn apis(requests: &[&SentRequest]) -> Vec<ApiKey> {
    requests.iter().map(|r| r.api).collect()
}

#[test]
fn startup_until_first_commit() {
    let run = run();
    let startup = run.startup();
    insta::assert_snapshot!(render(&startup, &run.names));

    let apis = apis(&startup);
    for api in [
        ApiKey::ApiVersions,
        ApiKey::Metadata,
        ApiKey::FindCoordinator,
        ApiKey::JoinGroup,
        ApiKey::SyncGroup,
        ApiKey::OffsetFetch,
        ApiKey::ListOffsets,
        ApiKey::Fetch,
        ApiKey::InitProducerId,
        ApiKey::Produce,
        ApiKey::OffsetCommit,
    ] {
        assert!(
            apis.contains(&api),
            "{api:?} missing from the startup: {apis:?}"
        );
    }

    // JoinGroup: first without a member id (MEMBER_ID_REQUIRED), then with the one it got.
    let joins: Vec<&&SentRequest> = startup
        .iter()
        .filter(|r| r.api == ApiKey::JoinGroup)
        .collect();
    assert_eq!(joins.len(), 2, "two JoinGroup requests");
    let (RequestKind::JoinGroup(first), RequestKind::JoinGroup(second)) =
        (&joins[0].body, &joins[1].body)
    else {
        unreachable!()
    };
    assert_eq!(&*first.member_id, "");
    let Some(ResponseKind::JoinGroup(answer)) = joins[0].answer.as_ref().map(|a| &a.body) else {
        panic!("the first JoinGroup was not answered");
    };
    assert_eq!(
        answer.error_code,
        ResponseError::MemberIdRequired.code(),
        "first JoinGroup answered with MEMBER_ID_REQUIRED"
    );
    assert_eq!(
        second.member_id, answer.member_id,
        "the retry uses the given id"
    );
    for join in [first, second] {
        assert_eq!(&*join.protocol_type, "consumer");
        assert_eq!(&*join.group_id.0, APP);
    }

    // The only member leads: its SyncGroup assigns every input partition to itself.
    let sync = startup
        .iter()
        .find(|r| r.api == ApiKey::SyncGroup)
        .expect("SyncGroup");
    let RequestKind::SyncGroup(sync) = &sync.body else {
        unreachable!()
    };
    assert_eq!(sync.assignments.len(), 1, "the leader sends one assignment");
    assert_eq!(sync.assignments[0].member_id, second.member_id);
    let (version, mut bytes) = embedded_version(&sync.assignments[0].assignment);
    let assignment = ConsumerProtocolAssignment::decode(&mut bytes, version).expect("assignment");
    let assigned: BTreeSet<(String, i32)> = assignment
        .assigned_partitions
        .iter()
        .flat_map(|t| t.partitions.iter().map(|&p| (t.topic.to_string(), p)))
        .collect();
    let want: BTreeSet<(String, i32)> = (0..PARTITIONS).map(|p| (INPUT.to_owned(), p)).collect();
    assert_eq!(assigned, want);

    for r in &run.requests {
        let cap = match r.api {
            ApiKey::Fetch | ApiKey::Produce | ApiKey::Metadata => 12,
            _ => i16::MAX,
        };
        assert!(r.version <= cap, "{:?} v{} above the cap", r.api, r.version);
        assert_eq!(
            r.header.client_id.as_deref(),
            Some("tagger-kstreams"),
            "client id of {:?}",
            r.api
        );
    }
}

#[test]
fn clean_close() {
    let run = run();
    let close = run.close();
    insta::assert_snapshot!(format!(
        "{}{}",
        render(&close, &run.names),
        render_connections(&run.connections)
    ));

    assert_eq!(run.state, EngineState::NotRunning);
    let total = FIRST_INPUT + SECOND_INPUT;
    assert_eq!(run.committed, vec![Some(total); PARTITIONS as usize]);
    let commit = close
        .iter()
        .position(|r| r.api == ApiKey::OffsetCommit)
        .expect("a final commit on close");
    let RequestKind::OffsetCommit(c) = &close[commit].body else {
        unreachable!()
    };
    let offsets: Vec<i64> = c
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| p.committed_offset))
        .collect();
    assert_eq!(offsets, vec![total; PARTITIONS as usize]);
    let group: Vec<&&SentRequest> = close.iter().filter(|r| is_group_api(r.api)).collect();
    let last = group.last().expect("group requests on close");
    assert_eq!(
        last.api,
        ApiKey::LeaveGroup,
        "LeaveGroup is the last group request"
    );
    assert_eq!(
        group.iter().filter(|r| r.api == ApiKey::LeaveGroup).count(),
        1,
        "one LeaveGroup"
    );
    let leave = close
        .iter()
        .position(|r| r.api == ApiKey::LeaveGroup)
        .expect("LeaveGroup");
    assert!(commit < leave, "the final commit comes before leaving");
    let commit_answer = close[commit].answer.as_ref().expect("commit answered");
    assert!(
        commit_answer.pos < close[leave].pos,
        "LeaveGroup waits for the final commit's answer"
    );
}

#[test]
fn requests_follow_the_ordering_rules() {
    let run = run();
    let requests = &run.requests;

    // The first frame of every connection is ApiVersions, and only the first.
    for r in requests {
        assert_eq!(
            r.api == ApiKey::ApiVersions,
            r.nth_on_conn == 0,
            "connection {} request {}: {:?}",
            r.conn,
            r.nth_on_conn,
            r.api
        );
    }

    // No Produce before InitProducerId was answered.
    let init_answer = requests
        .iter()
        .find(|r| r.api == ApiKey::InitProducerId)
        .and_then(|r| r.answer.as_ref())
        .expect("InitProducerId answered")
        .pos;
    for r in requests.iter().filter(|r| r.api == ApiKey::Produce) {
        assert!(
            r.pos > init_answer,
            "Produce at T0+{} before InitProducerId",
            r.at - T0
        );
    }

    // Every output record (tagged "partition:offset" of its input), with the wire position at
    // which the Produce carrying it was acknowledged without error.
    let mut acked: BTreeMap<(i32, i64), usize> = BTreeMap::new();
    for r in requests.iter().filter(|r| r.api == ApiKey::Produce) {
        let RequestKind::Produce(produce) = &r.body else {
            unreachable!()
        };
        let Some(Answer {
            pos,
            body: ResponseKind::Produce(answer),
            ..
        }) = &r.answer
        else {
            continue;
        };
        for t in &produce.topic_data {
            for p in &t.partition_data {
                let ok = answer.responses.iter().any(|rt| {
                    rt.name == t.name
                        && rt
                            .partition_responses
                            .iter()
                            .any(|rp| rp.index == p.index && rp.error_code == 0)
                });
                let Some(mut records) = p.records.clone() else {
                    continue;
                };
                if !ok {
                    continue;
                }
                let set = RecordBatchDecoder::decode(&mut records).expect("batch");
                for record in set.records {
                    let value = record.value.expect("tagged value");
                    let tag = std::str::from_utf8(&value).expect("utf-8 tag");
                    let (ip, io) = tag.split_once(':').expect("partition:offset");
                    let key = (ip.parse().expect("partition"), io.parse().expect("offset"));
                    acked.entry(key).or_insert(*pos);
                }
            }
        }
    }
    // OffsetCommit `C` of input partition `p`: every input offset below `C` has output whose
    // Produce was acknowledged before the commit was sent.
    let commits: Vec<&SentRequest> = requests
        .iter()
        .filter(|r| r.api == ApiKey::OffsetCommit)
        .collect();
    assert!(commits.len() >= 2, "the first commit and the close's");
    for commit in commits {
        let RequestKind::OffsetCommit(c) = &commit.body else {
            unreachable!()
        };
        for t in &c.topics {
            assert_eq!(&*t.name.0, INPUT, "only input offsets are committed");
            for p in &t.partitions {
                for o in 0..p.committed_offset {
                    let at = acked.get(&(p.partition_index, o)).unwrap_or_else(|| {
                        panic!("commit of {INPUT}-{} at {} but output of offset {o} was never acknowledged",
                            p.partition_index, p.committed_offset)
                    });
                    assert!(
                        *at < commit.pos,
                        "commit of {INPUT}-{} at {} sent before the output of offset {o} \
                         was acknowledged",
                        p.partition_index,
                        p.committed_offset
                    );
                }
            }
        }
    }
}

/// The same inputs give the same bytes: the snapshots cannot flicker.
#[test]
fn the_flow_is_deterministic() {
    let (a, b) = (run(), run());
    let all = |r: &Run| render(&r.requests.iter().collect::<Vec<_>>(), &r.names);
    assert_eq!(all(&a), all(&b));
    let raw = |r: &Run| {
        r.requests
            .iter()
            .map(|q| format!("{} {} {:?}", q.at, q.node, q.body))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        raw(&a),
        raw(&b),
        "identical bytes, not only identical renderings"
    );
}
