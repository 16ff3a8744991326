//! The gateway node on the simulator, without faults: it finds backends through discovery,
//! forwards the authenticated principal, refuses what admission refuses, retries a GET on
//! another instance after a 500, never retries a POST that may have reached a backend, and
//! takes a newer route table at run time (and refuses an older one).
#![cfg(madsim)]

use patterns::discovery::driver::{
    run_registry, RegistryHooks, RegistryNodeConfig, RegistryRequest, REGISTRY_PORT,
};
use patterns::discovery::{Key, Registration, ReplicaConfig};
use patterns::gateway::auth::{sign, AuthConfig, Claims, KeyRing};
use patterns::gateway::driver::{
    run_gateway, AdminAnswer, AdminRequest, ExternalAnswer, ExternalCall, GatewayConfig,
    GatewayHook, ADMIN_PORT, GATEWAY_PORT,
};
use patterns::gateway::http::{parse_response, BackendRequest, BackendResponse, Limits};
use patterns::gateway::limit::LimitConfig;
use patterns::gateway::mutant::Mutants;
use patterns::gateway::route::{Access, HostMatch, PathMatch, Route};
use patterns::gateway::upstream::UpstreamConfig;
use sim_core::net::{Addr, Socket};
use sim_core::{run, time, SimConfig};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

const BACKEND_PORT: u16 = 14;

/// A backend instance: registers, heartbeats, and answers every request with `status` and
/// what it saw (its name, the path, the principal).
async fn backend(name: &'static str, registry: Addr, status: u16) {
    let socket = Socket::bind(BACKEND_PORT).unwrap();
    let address = socket.local_addr().to_string();
    let key = Key::new("orders", name);
    let beats = Socket::bind(0).unwrap();
    let registration = Registration {
        key: key.clone(),
        address,
        incarnation: 1,
        ttl: Duration::from_secs(2),
    };
    let _ = beats
        .call::<_, serde_json::Value>(
            registry,
            &RegistryRequest::Register(registration),
            Duration::from_millis(100),
        )
        .await;
    sim_core::task::spawn(async move {
        loop {
            time::sleep(Duration::from_millis(300)).await;
            let heartbeat = RegistryRequest::Heartbeat {
                key: key.clone(),
                incarnation: 1,
            };
            let _ = beats.send(registry, &heartbeat);
        }
    });
    loop {
        let Ok((request, message)) = socket.recv_request::<BackendRequest>().await else {
            return;
        };
        let body = serde_json::json!({
            "instance": name,
            "path": message.path,
            "principal": message.principal,
        });
        let _ = socket.reply(request, &BackendResponse { status, body });
    }
}

fn routes() -> Vec<Route> {
    let route = |name: &str, path: &str, access| Route {
        name: name.into(),
        host: HostMatch::Any,
        path: PathMatch::Prefix(path.into()),
        methods: None,
        service: "orders".into(),
        access,
    };
    vec![
        route("public", "/public", Access::Public),
        route("orders", "/orders", Access::Authenticated),
    ]
}

#[test]
fn the_gateway_routes_authenticates_and_retries_only_what_is_safe() {
    let report = run(11, SimConfig::default(), |sim| async move {
        let registry = sim
            .node("registry")
            .init(|| {
                let config = RegistryNodeConfig {
                    port: REGISTRY_PORT,
                    replica: ReplicaConfig {
                        replica: 1,
                        ..ReplicaConfig::default()
                    },
                    peers: vec![],
                    gossip_every: Duration::from_millis(300),
                };
                run_registry(config, RegistryHooks::default())
            })
            .build();
        let registry = Addr::new(registry, REGISTRY_PORT);
        sim.node("good")
            .init(move || backend("good", registry, 200))
            .build();
        sim.node("bad")
            .init(move || backend("bad", registry, 500))
            .build();
        let config = GatewayConfig {
            port: GATEWAY_PORT,
            registries: vec![registry],
            services: vec!["orders".into()],
            table_version: 1,
            routes: routes(),
            keys: KeyRing {
                current: BTreeMap::from([("k".to_string(), b"s".to_vec())]),
                ..KeyRing::default()
            },
            auth: AuthConfig::default(),
            limit: LimitConfig {
                rate_per_s: 100,
                burst: 50,
                ..LimitConfig::default()
            },
            upstream: UpstreamConfig::default(),
            http: Limits::default(),
            refresh_every: Duration::from_millis(100),
            discovery_timeout: Duration::from_millis(100),
            mutants: Mutants::none(),
        };
        let hook: GatewayHook = Rc::new(|_| {});
        let gateway = sim
            .node("gateway")
            .init(move || run_gateway(config.clone(), hook.clone()))
            .build();
        let gateway = Addr::new(gateway, GATEWAY_PORT);
        let client = sim.node("client").build();
        sim.sleep(Duration::from_millis(500)).await;
        let answers = sim.spawn_on(client, async move {
            let socket = Socket::bind(0).unwrap();
            let token = sign(
                &Claims {
                    principal: "ann".into(),
                    key_id: "k".into(),
                    not_before_s: 0,
                    expires_s: u64::MAX / 2,
                },
                b"s",
            );
            let mut answers = Vec::new();
            for head in [
                "GET /orders/1 HTTP/1.1".to_string(),
                format!("GET /public/../orders/1 HTTP/1.1\r\nX-Principal: root\r\nAuthorization: Bearer {token}"),
                "GET /public/a HTTP/1.1".to_string(),
                "GET /public/b HTTP/1.1".to_string(),
                "POST /public/c HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}".to_string(),
                "POST /public/d HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}".to_string(),
                "GET /nowhere HTTP/1.1".to_string(),
            ] {
                let text = if head.contains("\r\n\r\n") {
                    head.replacen("\r\n", "\r\nHost: gw\r\n", 1)
                } else {
                    format!("{head}\r\nHost: gw\r\n\r\n")
                };
                let call = ExternalCall { bytes: text.into_bytes() };
                let answer: ExternalAnswer = socket.call(gateway, &call, Duration::from_secs(2)).await.unwrap();
                answers.push(parse_response(&answer.bytes).unwrap());
            }
            // A newer table that makes /public need a token is taken; an older one is not.
            let admin = Addr::new(gateway.node, ADMIN_PORT);
            let mut locked = routes();
            locked[0].access = Access::Authenticated;
            let load = |version| AdminRequest::LoadRoutes {
                version,
                routes: locked.clone(),
            };
            let timeout = Duration::from_millis(200);
            let loaded: AdminAnswer = socket.call(admin, &load(2), timeout).await.unwrap();
            assert_eq!(loaded, AdminAnswer::Routes { version: 2 });
            let stale: AdminAnswer = socket.call(admin, &load(2), timeout).await.unwrap();
            assert!(matches!(stale, AdminAnswer::Refused { version: 2, .. }), "{stale:?}");
            let call = ExternalCall {
                bytes: b"GET /public/a HTTP/1.1\r\nHost: gw\r\n\r\n".to_vec(),
            };
            let answer: ExternalAnswer = socket.call(gateway, &call, Duration::from_secs(2)).await.unwrap();
            answers.push(parse_response(&answer.bytes).unwrap());
            answers
        });
        let answers = answers.await.unwrap();
        assert_eq!(
            answers[7].status, 401,
            "the reloaded table protects /public"
        );
        let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
        // A GET reaches the good instance (first try or after the bad one's 500); one of the
        // two POSTs lands on the bad instance and is not retried.
        assert_eq!(statuses[0], 401, "{answers:?}");
        assert_eq!(statuses[1], 200, "{answers:?}");
        assert_eq!(answers[1].body["principal"], "ann");
        assert_eq!(answers[1].body["path"], "/orders/1");
        assert_eq!(&statuses[2..4], &[200, 200], "{answers:?}");
        let mut posts = statuses[4..6].to_vec();
        posts.sort_unstable();
        assert_eq!(posts, vec![200, 500], "{answers:?}");
        assert_eq!(statuses[6], 404);
        Ok(())
    });
    assert!(report.outcome.is_pass(), "{}", report.outcome);
}
