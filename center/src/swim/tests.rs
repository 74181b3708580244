//! The membership adapter on a simulated network: nodes exchange the adapter's actions
//! directly, time is a variable, and a dead node is one whose datagrams are dropped.

use super::*;

const STEP: Duration = Duration::from_millis(50);

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 20000 + i as u16))
}

fn id(i: usize, epoch: u64) -> CenterId {
    CenterId {
        name: format!("c{i}"),
        key: Some([i as u8; 32]),
        addr: addr(i),
        epoch,
    }
}

struct Net {
    now: Instant,
    nodes: Vec<Option<Membership>>,
    /// Nodes whose datagrams are lost (killed or cut off).
    dead: Vec<bool>,
    queue: Vec<(usize, Action)>,
    changes: Vec<(Duration, usize, String, MemberState)>,
    start: Instant,
}

impl Net {
    fn new(n: usize) -> Net {
        let now = Instant::now();
        let mut net = Net {
            now,
            nodes: (0..n)
                .map(|i| {
                    Some(Membership::new(
                        id(i, 1000),
                        config(datagram::MAX_PAYLOAD),
                        i as u64,
                        None,
                    ))
                })
                .collect(),
            dead: vec![false; n],
            queue: Vec::new(),
            changes: Vec::new(),
            start: now,
        };
        for i in 1..n {
            let actions = net.nodes[i].as_mut().unwrap().join(now, addr(0), Some([0; 32]));
            net.queue.extend(actions.into_iter().map(|a| (i, a)));
        }
        net.deliver();
        net
    }

    fn deliver(&mut self) {
        let mut rounds = 0;
        while !self.queue.is_empty() {
            rounds += 1;
            assert!(rounds < 1000, "datagrams never stop");
            for (from, action) in std::mem::take(&mut self.queue) {
                match action {
                    Action::Send { to, kind, payload } => {
                        let j = (to.addr.port() - 20000) as usize;
                        if self.dead[from] || self.dead[j] {
                            continue;
                        }
                        let Some(node) = self.nodes[j].as_mut() else { continue };
                        let key = Some([from as u8; 32]);
                        if let Ok(actions) = node.on_datagram(self.now, addr(from), key, kind, &payload) {
                            self.queue.extend(actions.into_iter().map(|a| (j, a)));
                        }
                    }
                    Action::Changed { id, state } => {
                        self.changes.push((self.now - self.start, from, id.name, state));
                    }
                }
            }
        }
    }

    fn run(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.now += STEP;
            for (i, node) in self.nodes.iter_mut().enumerate() {
                if let Some(node) = node.as_mut() {
                    if !self.dead[i] {
                        let actions = node.on_tick(self.now);
                        self.queue.extend(actions.into_iter().map(|a| (i, a)));
                    }
                }
            }
            self.deliver();
        }
    }

    fn state(&self, at: usize, of: usize) -> Option<MemberState> {
        self.nodes[at]
            .as_ref()?
            .facts()
            .find(|f| f.id.addr == addr(of))
            .map(|f| f.state)
    }

    /// When `at` first saw `of` in `state`, since the start.
    fn first(&self, at: usize, of: usize, state: MemberState) -> Option<Duration> {
        let name = format!("c{of}");
        self.changes
            .iter()
            .find(|(_, i, n, s)| *i == at && *n == name && *s == state)
            .map(|(t, ..)| *t)
    }
}

#[test]
fn three_centers_joined_through_one_see_each_other_alive() {
    let mut net = Net::new(3);
    net.run(Duration::from_secs(2));
    for (at, of) in [(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1)] {
        assert_eq!(net.state(at, of), Some(MemberState::Alive), "{at} about {of}");
    }
    // Idle: probes and acks only, no news left to gossip.
    net.queue.clear();
}

#[test]
fn a_killed_center_is_suspect_then_down_within_the_bound() {
    // (ring size, the bound after the kill within which every other center shows it down)
    let cases = [(3, Duration::from_millis(2700)), (6, Duration::from_millis(2700))];
    for (n, bound) in cases {
        let mut net = Net::new(n);
        net.run(Duration::from_secs(2));
        let killed_at = net.now - net.start;
        net.dead[n - 1] = true;
        net.run(Duration::from_secs(5));
        for at in 0..n - 1 {
            let suspect = net.first(at, n - 1, MemberState::Suspect);
            let down = net
                .first(at, n - 1, MemberState::Down)
                .unwrap_or_else(|| panic!("n={n}: c{at} never saw c{} down: {:?}", n - 1, net.changes));
            assert!(
                down - killed_at <= bound,
                "n={n}: c{at} saw it down {:?} after the kill",
                down - killed_at
            );
            if let Some(s) = suspect {
                assert!(s <= down, "n={n}: suspect after down at c{at}");
            }
            assert_eq!(net.state(at, n - 1), Some(MemberState::Down));
        }
        // Someone saw it suspect first (the suspicion before the verdict).
        assert!(
            (0..n - 1).any(|at| net.first(at, n - 1, MemberState::Suspect).is_some()),
            "n={n}: {:?}",
            net.changes
        );
    }
}

#[test]
fn a_center_that_leaves_is_shown_left_at_once_and_stays_left() {
    let mut net = Net::new(3);
    net.run(Duration::from_secs(2));
    let at = net.now - net.start;
    let actions = net.nodes[2].as_mut().unwrap().leave(net.now);
    assert!(
        actions
            .iter()
            .filter(|a| matches!(a, Action::Send { kind: Kind::Leave, .. }))
            .count()
            == 2
    );
    net.queue.extend(actions.into_iter().map(|a| (2, a)));
    net.deliver();
    net.nodes[2] = None;
    for i in 0..2 {
        assert_eq!(net.first(i, 2, MemberState::Left), Some(at), "c{i}: {:?}", net.changes);
    }
    net.run(Duration::from_secs(5));
    for i in 0..2 {
        assert_eq!(net.state(i, 2), Some(MemberState::Left), "c{i}");
        assert_eq!(net.first(i, 2, MemberState::Suspect), None, "c{i}: {:?}", net.changes);
    }
}

#[test]
fn a_restarted_center_comes_back_alive_with_its_new_epoch() {
    let mut net = Net::new(3);
    net.run(Duration::from_secs(2));
    net.dead[2] = true;
    net.run(Duration::from_secs(4));
    assert_eq!(net.state(0, 2), Some(MemberState::Down));
    net.dead[2] = false;
    net.nodes[2] = Some(Membership::new(id(2, 9000), config(datagram::MAX_PAYLOAD), 99, None));
    let actions = net.nodes[2].as_mut().unwrap().join(net.now, addr(0), Some([0; 32]));
    net.queue.extend(actions.into_iter().map(|a| (2, a)));
    net.deliver();
    net.run(Duration::from_secs(3));
    for i in 0..2 {
        let f = net.nodes[i]
            .as_ref()
            .unwrap()
            .facts()
            .find(|f| f.id.addr == addr(2))
            .cloned()
            .unwrap();
        assert_eq!((f.state, f.id.epoch), (MemberState::Alive, 9000), "c{i}");
    }
}

#[test]
fn a_center_that_left_and_restarts_is_alive_again_with_its_new_epoch() {
    let mut net = Net::new(3);
    net.run(Duration::from_secs(2));
    let actions = net.nodes[2].as_mut().unwrap().leave(net.now);
    net.queue.extend(actions.into_iter().map(|a| (2, a)));
    net.deliver();
    net.nodes[2] = None;
    net.run(Duration::from_secs(1));
    assert_eq!(net.state(0, 2), Some(MemberState::Left));
    net.nodes[2] = Some(Membership::new(id(2, 9000), config(datagram::MAX_PAYLOAD), 99, None));
    let actions = net.nodes[2].as_mut().unwrap().join(net.now, addr(0), Some([0; 32]));
    net.queue.extend(actions.into_iter().map(|a| (2, a)));
    net.deliver();
    net.run(Duration::from_secs(3));
    for i in 0..2 {
        let f = net.nodes[i]
            .as_ref()
            .unwrap()
            .facts()
            .find(|f| f.id.addr == addr(2))
            .cloned()
            .unwrap();
        assert_eq!(
            (f.state, f.id.epoch),
            (MemberState::Alive, 9000),
            "c{i}: {:?}",
            net.changes
        );
    }
}

#[test]
fn a_partition_heals_without_restarts() {
    let mut net = Net::new(4);
    net.run(Duration::from_secs(2));
    // Cut 3 off (as SIGSTOP would): both sides see the other down.
    net.dead[3] = true;
    net.run(Duration::from_secs(4));
    assert_eq!(net.state(0, 3), Some(MemberState::Down));
    net.dead[3] = false;
    net.run(ANNOUNCE_PERIOD * 3);
    for i in 0..3 {
        assert_eq!(net.state(i, 3), Some(MemberState::Alive), "c{i}: {:?}", net.changes);
    }
}

#[test]
fn datagrams_that_speak_for_another_key_or_address_are_refused() {
    let mut net = Net::new(2);
    net.run(Duration::from_secs(1));
    // A packet of c1's, replayed by someone else's key, and from another address.
    let me = net.nodes[1].as_ref().unwrap().me().clone();
    let leave = postcard::to_allocvec(&me).unwrap();
    let node = net.nodes[0].as_mut().unwrap();
    let cases: [(SocketAddr, Option<[u8; 32]>, &str); 3] = [
        (addr(1), Some([7; 32]), "another key"),
        (addr(9), Some([1; 32]), "came from"),
        (addr(1), None, "another key"),
    ];
    for (from, key, want) in cases {
        let err = node.on_datagram(net.now, from, key, Kind::Leave, &leave).unwrap_err();
        assert!(err.contains(want), "{from} {key:?}: {err}");
    }
    assert!(node
        .on_datagram(net.now, addr(1), Some([1; 32]), Kind::Swim, b"\xff\xff")
        .is_err());
    assert_eq!(net.state(0, 1), Some(MemberState::Alive));
}

#[test]
fn gossiped_members_past_the_bound_or_without_a_center_key_are_refused() {
    let only_even: IsCenter = Arc::new(|k: &[u8; 32]| k[0].is_multiple_of(2));
    let guard = Guard {
        known: (0..MAX_MEMBERS).map(addr).collect(),
        max_members: MAX_MEMBERS,
        is_center: Some(only_even),
    };
    let mut long = id(2, 1);
    long.name = "x".repeat(identity::MAX_NAME_BYTES + 1);
    let mut control = id(2, 1);
    control.name = "a\nb".into();
    let mut new_addr = id(2, 1);
    new_addr.addr = SocketAddr::from(([10, 0, 0, 1], 1));
    let cases: [(&str, CenterId, bool); 5] = [
        ("a known member with a center key", id(2, 1), true),
        ("a key not listed as a center's", id(3, 1), false),
        ("a name past the bound", long, false),
        ("control characters", control, false),
        ("a new member past the bound", new_addr, false),
    ];
    let codec = NerveCodec {
        guard: Arc::new(Mutex::new(guard)),
    };
    for (what, member, ok) in cases {
        let mut c = codec.clone();
        let mut buf = Vec::new();
        foca::Codec::encode_member(&mut c, &foca::Member::alive(member), &mut buf).unwrap();
        let got = foca::Codec::decode_member(&mut c, &buf[..]);
        assert_eq!(got.is_ok(), ok, "{what}: {got:?}");
    }
}

/// Bytes a center sends per second on an idle ring, sealed, counted in the simulation: a
/// probe (ping, ack) per [`PROBE_PERIOD`] and nothing else once the news is out, so the cost
/// per center does not grow with the ring. (A count, not a timing: the same every run.)
#[test]
fn idle_traffic_per_center_is_flat_in_the_ring_size() {
    /// The bound, sealed bytes per second per center, sent and received alike.
    const IDLE_BYTES_PER_SEC: f64 = 2500.0;
    let mut per_size = Vec::new();
    for n in [3, 10, 30] {
        let mut net = Net::new(n);
        // Joining, then the news of the joins gossiped out.
        net.run(Duration::from_secs(20));
        let mut sent = vec![0usize; n];
        let window = Duration::from_secs(10);
        let end = net.now + window;
        while net.now < end {
            net.now += STEP;
            for i in 0..n {
                let actions = net.nodes[i].as_mut().unwrap().on_tick(net.now);
                net.queue.extend(actions.into_iter().map(|a| (i, a)));
            }
            for (from, a) in &net.queue {
                if let Action::Send { payload, .. } = a {
                    sent[*from] += payload.len() + datagram::SEALED_OVERHEAD;
                }
            }
            // Replies count too: deliver by hand, counting what each answer sends.
            while !net.queue.is_empty() {
                for (from, action) in std::mem::take(&mut net.queue) {
                    if let Action::Send { to, kind, payload } = action {
                        let j = (to.addr.port() - 20000) as usize;
                        let node = net.nodes[j].as_mut().unwrap();
                        let actions = node
                            .on_datagram(net.now, addr(from), Some([from as u8; 32]), kind, &payload)
                            .unwrap_or_default();
                        for a in &actions {
                            if let Action::Send { payload, .. } = a {
                                sent[j] += payload.len() + datagram::SEALED_OVERHEAD;
                            }
                        }
                        net.queue.extend(actions.into_iter().map(|a| (j, a)));
                    }
                }
            }
        }
        let mean = sent.iter().sum::<usize>() as f64 / n as f64 / window.as_secs_f64();
        let max = *sent.iter().max().unwrap() as f64 / window.as_secs_f64();
        per_size.push((n, mean, max));
        assert!(
            max <= IDLE_BYTES_PER_SEC,
            "n={n}: a center sends {max:.0} B/s idle: {per_size:?}"
        );
    }
    eprintln!("idle sealed bytes/s per center (n, mean, max): {per_size:?}");
    let (_, small, _) = per_size[0];
    let (_, large, _) = per_size[2];
    assert!(large <= small * 1.5, "idle traffic grows with the ring: {per_size:?}");
}

#[test]
fn a_late_timer_is_put_off_once_by_its_lateness_up_to_a_probe_period() {
    let deadline = Instant::now();
    let ms = Duration::from_millis;
    // (ms late, put off before, put off until ms after the deadline)
    let cases = [
        (0, false, None),
        (49, false, None),
        (50, false, Some(100)),
        (300, false, Some(600)),
        (10_000, false, Some(10_500)),
        (300, true, None),
    ];
    for (late, before, want) in cases {
        let got = put_off(deadline, deadline + ms(late), before);
        assert_eq!(
            got,
            want.map(|w| deadline + ms(w)),
            "{late} ms late, put off before: {before}"
        );
    }
}

/// Lifeguard's local health in the adapter: on a healthy ring every score stays 0; a center
/// whose loop runs its timers only every 600 ms (starved) takes points, which stretch its
/// suspicion timeout, and gives them back once it runs on time; nobody is declared down.
#[test]
fn a_starved_center_takes_local_health_points_and_gives_them_back() {
    let mut net = Net::new(4);
    net.run(Duration::from_secs(3));
    for i in 0..4 {
        let m = net.nodes[i].as_ref().unwrap();
        assert_eq!(m.local_health().score(), 0, "c{i} healthy");
        assert_eq!(m.suspicion_timeout(), SUSPECT_TO_DOWN, "c{i}");
    }
    let starved = 3;
    let (mut most, mut longest) = (0, Duration::ZERO);
    let mut last_tick = net.now;
    let end = net.now + Duration::from_secs(6);
    while net.now < end {
        net.now += STEP;
        for i in 0..4 {
            if i == starved && net.now - last_tick < Duration::from_millis(600) {
                continue;
            }
            if i == starved {
                last_tick = net.now;
            }
            let actions = net.nodes[i].as_mut().unwrap().on_tick(net.now);
            net.queue.extend(actions.into_iter().map(|a| (i, a)));
        }
        net.deliver();
        let m = net.nodes[starved].as_ref().unwrap();
        most = most.max(m.local_health().score());
        longest = longest.max(m.suspicion_timeout());
    }
    assert!(most >= 1, "the starved center never doubted itself");
    assert!(longest > SUSPECT_TO_DOWN, "its suspicion timeout stayed {longest:?}");
    // Back on time: a point back per probe acked, each probe period stretched by the points
    // still held (at most 2.5 s, 2 s, 1.5 s, 1 s).
    net.run(Duration::from_secs(8));
    let m = net.nodes[starved].as_ref().unwrap();
    assert_eq!(m.local_health().score(), 0, "back on time (at most {most} before)");
    assert_eq!(m.suspicion_timeout(), SUSPECT_TO_DOWN);
    let downs: Vec<_> = net.changes.iter().filter(|c| c.3 == MemberState::Down).collect();
    assert!(downs.is_empty(), "false downs: {downs:?}");
}

/// A probe that gets no answer counts against the prober (Lifeguard's failed probe): after a
/// kill, the centers that probed the dead one took points, and gave them back on the probes
/// of the live ones after it was declared down.
#[test]
fn failed_probes_of_a_killed_center_raise_then_release_the_probers_health() {
    let mut net = Net::new(4);
    net.run(Duration::from_secs(3));
    net.dead[3] = true;
    let mut most = 0;
    let end = net.now + Duration::from_secs(4);
    while net.now < end {
        net.run(STEP);
        for i in 0..3 {
            most = most.max(net.nodes[i].as_ref().unwrap().local_health().score());
        }
    }
    assert!(
        most >= 1,
        "no prober took a point for its failed probe: {:?}",
        net.changes
    );
    for i in 0..3 {
        assert_eq!(net.state(i, 3), Some(MemberState::Down), "c{i}");
    }
    net.run(Duration::from_secs(6));
    for i in 0..3 {
        assert_eq!(net.nodes[i].as_ref().unwrap().local_health().score(), 0, "c{i}");
    }
}

/// A center that joins a ring of 30 through one member learns every member within 2 s: it
/// asks again every [`DISCOVER_AFTER`] while answers bring news (one answer holds about 15),
/// not only every [`ANNOUNCE_PERIOD`]; and once it knows them all, it stops asking.
#[test]
fn a_late_joiner_learns_the_whole_ring_within_two_seconds_then_stops_asking() {
    const N: usize = 30;
    let mut net = Net::new(N);
    net.dead[N - 1] = true;
    net.run(Duration::from_secs(15));
    net.dead[N - 1] = false;
    net.nodes[N - 1] = Some(Membership::new(id(N - 1, 9000), config(datagram::MAX_PAYLOAD), 7, None));
    let actions = net.nodes[N - 1]
        .as_mut()
        .unwrap()
        .join(net.now, addr(N - 2), Some([(N - 2) as u8; 32]));
    net.queue.extend(actions.into_iter().map(|a| (N - 1, a)));
    net.deliver();
    let joined = net.now;
    let mut knows_all = None;
    while net.now - joined < Duration::from_secs(2) && knows_all.is_none() {
        net.run(STEP);
        let alive = (0..N - 1)
            .filter(|&of| net.state(N - 1, of) == Some(MemberState::Alive))
            .count();
        if alive == N - 1 {
            knows_all = Some(net.now - joined);
        }
    }
    let took = knows_all.unwrap_or_else(|| {
        let known: Vec<usize> = (0..N - 1).filter(|&of| net.state(N - 1, of).is_some()).collect();
        panic!("the joiner knows only {known:?} after 2 s")
    });
    eprintln!("a joiner of a ring of {N} knew every member {took:?} after joining");
    net.run(Duration::from_secs(1));
    assert_eq!(net.nodes[N - 1].as_ref().unwrap().discover_at, None, "still asking");
}
