//! The authorization matrix: every route that reaches a project's files, uploads, workflows or
//! tasks, called by every kind of principal — each key kind of the owning project, a key of
//! another project, a key of another workspace of the same project, a revoked key, no key —
//! with the status each must get. Nobody reads, lists, links, resumes, completes or deletes
//! another project's (or workspace's) files or tasks. Runs on both flavours.

#![allow(clippy::unwrap_used, reason = "tests")]

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use filedock_core::{CredentialKind, ParamType, ParameterSpec, ProjectId, Workflow, WorkspaceId};
use serde_json::{Value, json};

/// Who calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    /// Keys of the owning project, by kind.
    Session,
    Integration,
    Device,
    Admin,
    /// An integration key of another project.
    OtherProject,
    /// A device key of another project.
    OtherDevice,
    /// An integration key of the owning project, limited to another workspace.
    OtherWorkspace,
    Revoked,
    NoKey,
}

const EVERYONE: [Who; 9] = [
    Who::Session,
    Who::Integration,
    Who::Device,
    Who::Admin,
    Who::OtherProject,
    Who::OtherDevice,
    Who::OtherWorkspace,
    Who::Revoked,
    Who::NoKey,
];

const OK: StatusCode = StatusCode::OK;
const NO_CONTENT: StatusCode = StatusCode::NO_CONTENT;
const CONFLICT: StatusCode = StatusCode::CONFLICT;
const NOT_FOUND: StatusCode = StatusCode::NOT_FOUND;
const FORBIDDEN: StatusCode = StatusCode::FORBIDDEN;
const UNAUTHORIZED: StatusCode = StatusCode::UNAUTHORIZED;

/// The owning project's keys get `ok`; strangers (another project or workspace) get 404, as if
/// the thing did not exist; a revoked key and no key get 401.
fn owners(ok: StatusCode) -> impl Fn(Who) -> StatusCode {
    move |w| match w {
        Who::Session | Who::Integration | Who::Device | Who::Admin => ok,
        Who::OtherProject | Who::OtherDevice | Who::OtherWorkspace => NOT_FOUND,
        Who::Revoked | Who::NoKey => UNAUTHORIZED,
    }
}

struct Keys {
    session: String,
    integration: String,
    device: String,
    admin: String,
    other_project: String,
    other_device: String,
    other_workspace: String,
    revoked: String,
}

impl Keys {
    fn of(&self, w: Who) -> Option<&str> {
        Some(match w {
            Who::Session => &self.session,
            Who::Integration => &self.integration,
            Who::Device => &self.device,
            Who::Admin => &self.admin,
            Who::OtherProject => &self.other_project,
            Who::OtherDevice => &self.other_device,
            Who::OtherWorkspace => &self.other_workspace,
            Who::Revoked => &self.revoked,
            Who::NoKey => return None,
        })
    }
}

/// One call: method, path, headers and body.
#[derive(Clone)]
struct Call {
    method: &'static str,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

fn call(method: &'static str, path: impl Into<String>) -> Call {
    Call {
        method,
        path: path.into(),
        headers: vec![],
        body: vec![],
    }
}

impl Call {
    fn json(mut self, v: Value) -> Call {
        self.headers.push(("content-type", "application/json".into()));
        self.body = v.to_string().into_bytes();
        self
    }
    fn tus(mut self) -> Call {
        self.headers.push(("tus-resumable", "1.0.0".into()));
        self
    }
    fn header(mut self, k: &'static str, v: impl Into<String>) -> Call {
        self.headers.push((k, v.into()));
        self
    }
    fn body(mut self, b: &[u8]) -> Call {
        self.body = b.to_vec();
        self
    }
}

async fn send(app: &TestApp, c: &Call, key: Option<&str>) -> Answer {
    let mut req = Request::builder().method(c.method).uri(&c.path);
    if let Some(k) = key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    for (k, v) in &c.headers {
        req = req.header(*k, v);
    }
    app.send(req.body(Body::from(c.body.clone())).unwrap()).await
}

#[tokio::test]
async fn every_route_answers_every_principal_as_it_must() {
    let app = TestApp::configured(|c| {
        c.workflows = vec![Workflow {
            id: "wf_alpha".into(),
            slug: Some("alpha-flow".into()),
            project: "alpha".into(),
            parameters: vec![ParameterSpec {
                name: "doc".into(),
                kind: ParamType::File,
                required: false,
            }],
        }];
    })
    .await;
    let creds = app.files.credentials();
    let alpha = ProjectId::new("alpha").unwrap();
    let revoked = app.key("alpha", CredentialKind::Integration).await;
    let keys = Keys {
        session: app.key("alpha", CredentialKind::Session).await,
        integration: app.key("alpha", CredentialKind::Integration).await,
        device: app.key("alpha", CredentialKind::Device).await,
        admin: app.key("alpha", CredentialKind::Admin).await,
        other_project: app.key("beta", CredentialKind::Integration).await,
        other_device: app.key("beta", CredentialKind::Device).await,
        other_workspace: creds
            .create(
                alpha.clone(),
                Some(WorkspaceId::new("w2").unwrap()),
                CredentialKind::Integration,
                None,
            )
            .await
            .unwrap()
            .1,
        revoked: revoked.clone(),
    };
    let revoked_id = creds
        .list(Some(&alpha))
        .await
        .unwrap()
        .into_iter()
        .find(|c| revoked.contains(&c.id))
        .unwrap()
        .id;
    creds.revoke(&revoked_id).await.unwrap();
    let owner = keys.integration.clone();
    let runner = app.key("alpha", CredentialKind::Device).await;

    // What alpha owns: a file, a pending direct upload, a multipart upload, a tus upload, and a
    // task its own runner holds.
    let file = app.upload_raw(&owner, "f.txt", b"alpha's file").await.json();
    let fid = file["id"].as_str().unwrap().to_owned();
    let fkey = file["key"].as_str().unwrap().to_owned();
    let pending = app
        .post_json(&owner, "/v1/uploads", json!({"name": "p.txt", "size": 5}))
        .await
        .json();
    let pid = pending["file"]["id"].as_str().unwrap().to_owned();
    let multipart = app
        .post_json(
            &owner,
            "/v1/uploads/multipart",
            json!({"name": "m.bin", "size": 6 << 20}),
        )
        .await
        .json();
    let mid = multipart["upload_id"].as_str().unwrap().to_owned();
    let cyberun_mp = app
        .post_json(
            &keys.session,
            "/api/v1/uploads/multipart/initiate",
            json!({"file_name": "c.bin", "file_size": 6 << 20}),
        )
        .await
        .json();
    let cmid = cyberun_mp["upload_id"].as_str().unwrap().to_owned();
    let tus = send(
        &app,
        &call("POST", "/tus/").tus().header("upload-length", "10"),
        Some(&owner),
    )
    .await;
    assert_eq!(tus.status, StatusCode::CREATED);
    let tus_path = tus.header("location").unwrap().replace(BASE, "");
    let task = app
        .post_json(
            &owner,
            "/api/v1/r/workflows/wf_alpha/run",
            json!({"parameters": {"doc": fkey}}),
        )
        .await
        .json();
    let tid = task["task_id"].as_str().unwrap().to_owned();
    let claimed = app.post_json(&runner, "/api/v1/r/tasks/claim", json!({})).await;
    assert_eq!(claimed.status, OK);

    type Rule = Box<dyn Fn(Who) -> StatusCode>;
    // Cyberun's multipart takes session keys only: any other kind, of any project, is 401.
    let session_only: Rule = Box::new(|w| if w == Who::Session { OK } else { UNAUTHORIZED });
    let devices_only: Rule = Box::new(|w| match w {
        Who::Device | Who::OtherDevice => NO_CONTENT,
        Who::Revoked | Who::NoKey => UNAUTHORIZED,
        _ => FORBIDDEN,
    });
    let project_wide: Rule = Box::new(|w| match w {
        Who::OtherProject | Who::OtherDevice => NOT_FOUND,
        Who::Revoked | Who::NoKey => UNAUTHORIZED,
        _ => OK,
    });
    let any_key: Rule = Box::new(|w| match w {
        Who::Revoked | Who::NoKey => UNAUTHORIZED,
        _ => OK,
    });
    // Keys are managed by admin keys only, each in its own project.
    let admins_only = |ok: StatusCode| -> Rule {
        Box::new(move |w| match w {
            Who::Admin => ok,
            Who::Revoked | Who::NoKey => UNAUTHORIZED,
            _ => FORBIDDEN,
        })
    };
    let out = json!({"file_name": "o.txt", "file_size": 1});
    let routes: Vec<(&str, Call, Rule)> = vec![
        ("list keys", call("GET", "/v1/admin/keys"), admins_only(OK)),
        (
            "create a key",
            call("POST", "/v1/admin/keys").json(json!({"kind": "integration"})),
            admins_only(StatusCode::CREATED),
        ),
        (
            "get a file",
            call("GET", format!("/v1/files/{fid}")),
            Box::new(owners(OK)),
        ),
        (
            "download",
            call("GET", format!("/v1/files/{fid}/content")),
            Box::new(owners(OK)),
        ),
        (
            "download a range",
            call("GET", format!("/v1/files/{fid}/content")).header("range", "bytes=0-3"),
            Box::new(owners(StatusCode::PARTIAL_CONTENT)),
        ),
        (
            "link",
            call("POST", format!("/v1/files/{fid}/links")).json(json!({})),
            Box::new(owners(StatusCode::CREATED)),
        ),
        (
            "look up by key",
            call("GET", format!("/v1/files/lookup?path={}", urlencode(&fkey))),
            Box::new(owners(OK)),
        ),
        (
            "look up by path",
            call(
                "GET",
                format!(
                    "/v1/files/lookup?path={}",
                    urlencode(&format!("local://filedock.test/{fkey}"))
                ),
            ),
            Box::new(owners(OK)),
        ),
        ("list", call("GET", "/v1/files"), any_key),
        (
            "complete a direct upload",
            call("POST", format!("/v1/uploads/{pid}/complete")),
            Box::new(owners(CONFLICT)),
        ),
        (
            "presign parts",
            call("POST", format!("/v1/uploads/multipart/{mid}/parts")).json(json!({"part_numbers": [1]})),
            Box::new(owners(OK)),
        ),
        (
            "complete multipart",
            call("POST", format!("/v1/uploads/multipart/{mid}/complete"))
                .json(json!({"parts": [{"part_number": 1, "etag": "x"}]})),
            Box::new(owners(StatusCode::BAD_REQUEST)),
        ),
        (
            "cyberun presign parts",
            call("POST", "/api/v1/uploads/multipart/presign-parts")
                .json(json!({"upload_id": cmid, "part_numbers": [1]})),
            session_only,
        ),
        ("tus HEAD", call("HEAD", tus_path.clone()).tus(), Box::new(owners(OK))),
        (
            "tus PATCH",
            call("PATCH", tus_path.clone())
                .tus()
                .header("upload-offset", "0")
                .header("content-type", "application/offset+octet-stream")
                .body(b""),
            Box::new(owners(NO_CONTENT)),
        ),
        (
            "tus concat",
            call("POST", "/tus/")
                .tus()
                .header("upload-concat", format!("final;{BASE}{tus_path}")),
            Box::new(|w| match w {
                // Not a partial upload: refused for the owner too, but only after it was found.
                Who::Session | Who::Integration | Who::Device | Who::Admin => StatusCode::BAD_REQUEST,
                Who::Revoked | Who::NoKey => UNAUTHORIZED,
                _ => NOT_FOUND,
            }),
        ),
        (
            "run a workflow",
            call("POST", "/api/v1/r/workflows/wf_alpha/run").json(json!({})),
            project_wide,
        ),
        (
            "run a workflow by slug",
            call("POST", "/api/v1/r/workflows/slug/alpha-flow/run").json(json!({})),
            Box::new(|w| match w {
                Who::OtherProject | Who::OtherDevice => NOT_FOUND,
                Who::Revoked | Who::NoKey => UNAUTHORIZED,
                _ => OK,
            }),
        ),
        (
            "run with another's file",
            call("POST", "/api/v1/r/workflows/wf_alpha/run").json(json!({"parameters": {"doc": fkey}})),
            Box::new(|w| match w {
                Who::Session | Who::Integration | Who::Device | Who::Admin => OK,
                // Another workspace's key finds the workflow but not the file.
                Who::OtherWorkspace => StatusCode::BAD_REQUEST,
                Who::OtherProject | Who::OtherDevice => NOT_FOUND,
                Who::Revoked | Who::NoKey => UNAUTHORIZED,
            }),
        ),
        (
            "get a task",
            call("GET", format!("/api/v1/r/tasks/{tid}")),
            Box::new(owners(OK)),
        ),
        (
            "a task's result",
            call("GET", format!("/api/v1/r/tasks/{tid}/result")),
            Box::new(owners(OK)),
        ),
        (
            "heartbeat another's task",
            call("POST", format!("/api/v1/r/tasks/{tid}/heartbeat")),
            Box::new(owners(CONFLICT)),
        ),
        (
            "presign another's output",
            call("POST", format!("/api/v1/r/tasks/{tid}/outputs/presign")).json(out),
            Box::new(owners(CONFLICT)),
        ),
        (
            "complete another's task",
            call("POST", format!("/api/v1/r/tasks/{tid}/complete")).json(json!({"outputs": []})),
            Box::new(owners(CONFLICT)),
        ),
        (
            "fail another's task",
            call("POST", format!("/api/v1/r/tasks/{tid}/fail")).json(json!({"reason": "x"})),
            Box::new(owners(CONFLICT)),
        ),
        // Claims come after the matrix: each run above queued a task, so alpha's queue is drained
        // first (below).
    ];

    let mut checked = 0;
    let mut failures = Vec::new();
    for (name, c, rule) in &routes {
        for w in EVERYONE {
            let a = send(&app, c, keys.of(w)).await;
            let want = rule(w);
            checked += 1;
            if a.status != want {
                failures.push(format!(
                    "{name} as {w:?}: {} (want {want}) {}",
                    a.status,
                    String::from_utf8_lossy(&a.body)
                ));
            }
            // A listing answered to anyone else never shows alpha's file.
            if *name == "list"
                && a.status == OK
                && !matches!(w, Who::Session | Who::Integration | Who::Device | Who::Admin)
            {
                assert!(
                    !String::from_utf8_lossy(&a.body).contains(&fid),
                    "{w:?} listed alpha's file"
                );
            }
        }
    }

    // Claims: only device keys; each gets its own project's tasks (alpha's are drained first).
    let drain = app.key("alpha", CredentialKind::Device).await;
    while app.post_json(&drain, "/api/v1/r/tasks/claim", json!({})).await.status == OK {}
    let claim = call("POST", "/api/v1/r/tasks/claim").json(json!({}));
    for w in EVERYONE {
        let a = send(&app, &claim, keys.of(w)).await;
        checked += 1;
        if a.status != devices_only(w) {
            failures.push(format!("claim as {w:?}: {} (want {})", a.status, devices_only(w)));
        }
    }

    // Deleting and aborting: strangers first (refused, nothing happens), then the owner.
    let once: Vec<(&str, Call, StatusCode)> = vec![
        ("delete a file", call("DELETE", format!("/v1/files/{fid}")), NO_CONTENT),
        (
            "abort multipart",
            call("DELETE", format!("/v1/uploads/multipart/{mid}")),
            NO_CONTENT,
        ),
        ("tus DELETE", call("DELETE", tus_path.clone()).tus(), NO_CONTENT),
    ];
    // Revoking a key: no one but alpha's admin (others get 403 or 401; nothing is revoked).
    let victim = app.key("alpha", CredentialKind::Device).await;
    let victim_id = creds
        .list(Some(&alpha))
        .await
        .unwrap()
        .into_iter()
        .find(|c| victim.contains(&c.id))
        .unwrap()
        .id;
    let revoke = call("DELETE", format!("/v1/admin/keys/{victim_id}"));
    for w in EVERYONE.into_iter().filter(|w| *w != Who::Admin) {
        let a = send(&app, &revoke, keys.of(w)).await;
        checked += 1;
        if a.status != admins_only(NO_CONTENT)(w) {
            failures.push(format!("revoke a key as {w:?}: {}", a.status));
        }
    }
    assert_eq!(app.get(&victim, "/v1/files").await.status, OK, "the key still works");
    assert_eq!(send(&app, &revoke, Some(&keys.admin)).await.status, NO_CONTENT);
    assert_eq!(
        app.get(&victim, "/v1/files").await.status,
        UNAUTHORIZED,
        "revoked at once"
    );
    for (name, c, done) in &once {
        for w in [
            Who::OtherProject,
            Who::OtherDevice,
            Who::OtherWorkspace,
            Who::Revoked,
            Who::NoKey,
        ] {
            let a = send(&app, c, keys.of(w)).await;
            checked += 1;
            if a.status != owners(OK)(w) {
                failures.push(format!("{name} as {w:?}: {} (want {})", a.status, owners(OK)(w)));
            }
        }
        let a = send(&app, c, Some(&owner)).await;
        checked += 1;
        assert_eq!(a.status, *done, "{name} by its owner");
    }
    let cyberun_abort = call("POST", "/api/v1/uploads/multipart/abort").json(json!({"upload_id": cmid}));
    for w in [
        Who::Integration,
        Who::Device,
        Who::Admin,
        Who::OtherProject,
        Who::Revoked,
        Who::NoKey,
    ] {
        let a = send(&app, &cyberun_abort, keys.of(w)).await;
        checked += 1;
        if a.status != UNAUTHORIZED {
            failures.push(format!("cyberun abort as {w:?}: {}", a.status));
        }
    }
    assert_eq!(send(&app, &cyberun_abort, Some(&keys.session)).await.status, NO_CONTENT);

    assert!(
        failures.is_empty(),
        "{} of {checked} checks failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // The figure docs/guarantees.md reports.
    println!("authorization matrix: {checked} route × principal checks");
}
