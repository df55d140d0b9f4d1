//! The read side: listing, downloading and deleting one's own files only.

use reqwest::StatusCode;

use crate::helpers::{Backend, reply, spawn_app, spawn_app_with};

crate::on_both_backends!(
    files_are_listed_newest_first_with_keyset_pagination,
    another_users_file_is_a_404_everywhere,
    a_download_names_the_original_file,
    a_download_answers_json_when_asked_for_it,
    a_public_bucket_downloads_from_the_unsigned_url_and_a_private_one_does_not,
    a_delete_removes_the_object_and_the_row
);

async fn files_are_listed_newest_first_with_keyset_pagination(backend: Backend) {
    let app = spawn_app(backend).await;
    for i in 0..5 {
        app.upload_as("alice", &format!("f{i}.txt"), "text/plain", vec![b'x'; i + 1]).await;
    }
    app.upload_as("bob", "bob.txt", "text/plain", b"b".to_vec()).await;

    let first = reply(app.get_as("alice", "/files?limit=2").await).await;
    assert_eq!(first.status, StatusCode::OK);
    let names: Vec<&str> =
        first.body["files"].as_array().unwrap().iter().map(|f| f["fileName"].as_str().unwrap()).collect();
    assert_eq!(names, ["f4.txt", "f3.txt"]);
    let cursor = first.body["nextCursor"].as_str().unwrap();

    let second = reply(app.get_as("alice", &format!("/files?limit=2&cursor={cursor}")).await).await;
    let names: Vec<&str> =
        second.body["files"].as_array().unwrap().iter().map(|f| f["fileName"].as_str().unwrap()).collect();
    assert_eq!(names, ["f2.txt", "f1.txt"]);

    let all = reply(app.get_as("alice", "/files").await).await;
    assert_eq!(all.body["files"].as_array().unwrap().len(), 5);
    assert!(all.body["nextCursor"].is_null());
    let file = &all.body["files"][0];
    for field in ["id", "objectKey", "fileUrl", "contentType", "size", "uploadTimestamp"] {
        assert!(!file[field].is_null(), "{field} missing in {file}");
    }
}

async fn another_users_file_is_a_404_everywhere(backend: Backend) {
    let app = spawn_app(backend).await;
    let file = app.upload_as("alice", "secret.txt", "text/plain", b"alice's".to_vec()).await;
    let id = file["id"].as_i64().unwrap();
    let r = reply(app.get_as("mallory", &format!("/files/{id}/download")).await).await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "file-not-found"));
    let r = app.delete_as("mallory", &format!("/files/{id}")).await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "file-not-found"));
    let listed = reply(app.get_as("mallory", "/files").await).await;
    assert!(listed.body["files"].as_array().unwrap().is_empty());
    let key = file["objectKey"].as_str().unwrap();
    assert!(app.object_exists(key).await);
    assert_eq!(app.download_as("alice", id).await, b"alice's");
}

async fn a_download_names_the_original_file(backend: Backend) {
    let app = spawn_app(backend).await;
    let file = app.upload_as("user_123", "Résumé 2026.pdf", "application/pdf", b"%PDF".to_vec()).await;
    let id = file["id"].as_i64().unwrap();
    let redirect = app.get_as("user_123", &format!("/files/{id}/download")).await;
    let location = redirect.headers()["location"].to_str().unwrap().to_owned();
    let object = app.http.get(location).send().await.unwrap();
    let disposition = object.headers()["content-disposition"].to_str().unwrap().to_owned();
    assert!(disposition.starts_with("attachment;"), "{disposition}");
    assert!(disposition.contains("filename*=UTF-8''R%C3%A9sum%C3%A9%202026.pdf"), "{disposition}");
}

async fn a_delete_removes_the_object_and_the_row(backend: Backend) {
    let app = spawn_app(backend).await;
    let file = app.upload_as("user_123", "bye.txt", "text/plain", b"bye".to_vec()).await;
    let id = file["id"].as_i64().unwrap();
    let key = file["objectKey"].as_str().unwrap();
    let r = app.delete_as("user_123", &format!("/files/{id}")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(!app.object_exists(key).await);
    assert_eq!(app.row_count().await, 0);
    let again = app.delete_as("user_123", &format!("/files/{id}")).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
}

async fn a_download_answers_json_when_asked_for_it(backend: Backend) {
    let app = spawn_app(backend).await;
    let file = app.upload_as("user_123", "j.txt", "text/plain", b"as json".to_vec()).await;
    let path = format!("/files/{}/download", file["id"]);
    let response = app.http.get(app.url(&path)).header("accept", "application/json").send().await.unwrap();
    let r = reply(response).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["success"], true);
    let url = r.body["url"].as_str().unwrap();
    assert!(url.contains("X-Amz-Signature="), "a signed URL: {url}");
    let object = app.http.get(url).send().await.unwrap();
    assert_eq!(object.status(), StatusCode::OK);
    assert_eq!(object.bytes().await.unwrap().as_ref(), b"as json");
    // Without the header, the same download is a redirect.
    assert_eq!(app.get_as("user_123", &path).await.status(), StatusCode::FOUND);
}

async fn a_public_bucket_downloads_from_the_unsigned_url_and_a_private_one_does_not(backend: Backend) {
    let public = spawn_app_with(backend, &[("FERRY_PUBLIC_BUCKET", "true")]).await;
    let file = public.upload_as("user_123", "p.txt", "text/plain", b"public".to_vec()).await;
    let redirect = public.get_as("user_123", &format!("/files/{}/download", file["id"])).await;
    assert_eq!(redirect.status(), StatusCode::FOUND);
    let location = redirect.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(location, file["fileUrl"].as_str().unwrap(), "the public URL, unsigned");
    assert!(!location.contains("X-Amz-"), "{location}");
    let object = public.http.get(&location).send().await.unwrap();
    assert_eq!(object.status(), StatusCode::OK);
    assert_eq!(object.bytes().await.unwrap().as_ref(), b"public");

    // By default the bucket is private: the same kind of URL is refused, downloads are signed.
    let private = spawn_app(backend).await;
    let file = private.upload_as("user_123", "p.txt", "text/plain", b"private".to_vec()).await;
    let unsigned = private.http.get(file["fileUrl"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(unsigned.status(), StatusCode::FORBIDDEN);
    let redirect = private.get_as("user_123", &format!("/files/{}/download", file["id"])).await;
    assert!(redirect.headers()["location"].to_str().unwrap().contains("X-Amz-Signature="));
}
