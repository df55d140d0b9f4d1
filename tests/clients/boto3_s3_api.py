"""The S3 operations everyday tools rely on, through boto3, against Ferry's embedded store.

Usage: boto3_s3_api.py ENDPOINT BUCKET ACCESS_KEY SECRET_KEY
Each check is a function named after what it shows; the first failure exits non-zero with a
traceback naming it.
"""
import base64
import datetime
import hashlib
import os
import sys
import zlib

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

endpoint, bucket, access_key, secret_key = sys.argv[1:5]
s3 = boto3.client(
    "s3",
    endpoint_url=endpoint,
    aws_access_key_id=access_key,
    aws_secret_access_key=secret_key,
    region_name="us-east-1",
    config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
)
MiB = 1024 * 1024


def error_of(call, **kwargs):
    """The (HTTP status, S3 code) a call fails with."""
    try:
        call(**kwargs)
    except ClientError as e:
        return e.response["ResponseMetadata"]["HTTPStatusCode"], e.response["Error"]["Code"]
    raise AssertionError(f"{call.__name__} succeeded")


def buckets_have_a_creation_date_and_the_own_bucket_already_exists():
    listed = s3.list_buckets()["Buckets"]
    assert [b["Name"] for b in listed] == [bucket], listed
    assert isinstance(listed[0]["CreationDate"], datetime.datetime)
    s3.head_bucket(Bucket=bucket)
    assert s3.get_bucket_location(Bucket=bucket).get("LocationConstraint") in (None, "")
    assert error_of(s3.create_bucket, Bucket=bucket) == (409, "BucketAlreadyOwnedByYou")
    assert error_of(s3.create_bucket, Bucket="another")[0] == 501


def metadata_and_standard_headers_round_trip():
    expires = datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    s3.put_object(
        Bucket=bucket, Key="meta/a.txt", Body=b"hello", ContentType="text/plain",
        Metadata={"Colour": "blue", "x": "1"}, CacheControl="max-age=60", ContentEncoding="identity",
        ContentLanguage="fr", Expires=expires,
    )
    for answer in (s3.head_object(Bucket=bucket, Key="meta/a.txt"), s3.get_object(Bucket=bucket, Key="meta/a.txt")):
        assert answer["Metadata"] == {"colour": "blue", "x": "1"}, answer["Metadata"]
        assert answer["CacheControl"] == "max-age=60"
        assert answer["ContentEncoding"] == "identity"
        assert answer["ContentLanguage"] == "fr"
        assert answer["Expires"] == expires, answer.get("Expires")


def conditional_reads_answer_304_and_412():
    put = s3.put_object(Bucket=bucket, Key="cond/a.txt", Body=b"v1")
    etag = put["ETag"]
    modified = s3.head_object(Bucket=bucket, Key="cond/a.txt")["LastModified"]
    before = modified - datetime.timedelta(hours=1)
    after = modified + datetime.timedelta(hours=1)
    for call in (s3.get_object, s3.head_object):
        ok = dict(Bucket=bucket, Key="cond/a.txt")
        call(**ok, IfMatch=etag)
        call(**ok, IfNoneMatch='"0123"')
        call(**ok, IfModifiedSince=before)
        call(**ok, IfUnmodifiedSince=after)
        assert error_of(call, **ok, IfMatch='"0123"')[0] == 412
        assert error_of(call, **ok, IfUnmodifiedSince=before)[0] == 412
        assert error_of(call, **ok, IfNoneMatch=etag)[0] == 304
        assert error_of(call, **ok, IfModifiedSince=after)[0] == 304
        # If-Match wins over If-Unmodified-Since, If-None-Match over If-Modified-Since (as S3).
        call(**ok, IfMatch=etag, IfUnmodifiedSince=before)
        assert error_of(call, **ok, IfNoneMatch=etag, IfModifiedSince=before)[0] == 304


def conditional_writes_refuse_with_412():
    s3.put_object(Bucket=bucket, Key="cond/new.txt", Body=b"first", IfNoneMatch="*")
    assert error_of(s3.put_object, Bucket=bucket, Key="cond/new.txt", Body=b"again", IfNoneMatch="*")[0] == 412
    etag = s3.head_object(Bucket=bucket, Key="cond/new.txt")["ETag"]
    assert error_of(s3.put_object, Bucket=bucket, Key="cond/new.txt", Body=b"x", IfMatch='"0123"')[0] == 412
    s3.put_object(Bucket=bucket, Key="cond/new.txt", Body=b"second", IfMatch=etag)
    assert s3.get_object(Bucket=bucket, Key="cond/new.txt")["Body"].read() == b"second"


def copy_keeps_or_replaces_metadata():
    s3.put_object(Bucket=bucket, Key="copy/src", Body=b"source", ContentType="text/plain", Metadata={"a": "1"})
    s3.copy_object(Bucket=bucket, Key="copy/kept", CopySource={"Bucket": bucket, "Key": "copy/src"})
    kept = s3.head_object(Bucket=bucket, Key="copy/kept")
    assert (kept["ContentType"], kept["Metadata"]) == ("text/plain", {"a": "1"}), kept
    s3.copy_object(
        Bucket=bucket, Key="copy/replaced", CopySource={"Bucket": bucket, "Key": "copy/src"},
        MetadataDirective="REPLACE", ContentType="application/json", Metadata={"b": "2"},
    )
    replaced = s3.get_object(Bucket=bucket, Key="copy/replaced")
    assert (replaced["ContentType"], replaced["Metadata"]) == ("application/json", {"b": "2"}), replaced
    assert replaced["Body"].read() == b"source"
    # Onto itself only with REPLACE, as S3.
    same = dict(Bucket=bucket, Key="copy/src", CopySource={"Bucket": bucket, "Key": "copy/src"})
    assert error_of(s3.copy_object, **same) == (400, "InvalidRequest")
    s3.copy_object(**same, MetadataDirective="REPLACE", Metadata={"c": "3"})
    assert s3.head_object(Bucket=bucket, Key="copy/src")["Metadata"] == {"c": "3"}
    assert error_of(s3.copy_object, Bucket=bucket, Key="copy/x", CopySource={"Bucket": bucket, "Key": "copy/none"}) \
        == (404, "NoSuchKey")
    assert error_of(s3.copy_object, Bucket=bucket, Key="copy/x", CopySource={"Bucket": bucket, "Key": "copy/src"},
                    CopySourceIfMatch='"0123"')[0] == 412


def listings_page_group_and_encode():
    keys = ["list/a", "list/b c+d", "list/dir/1", "list/dir/2", "list/dir/sub/3", "list/z"]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    v2 = s3.list_objects_v2(Bucket=bucket, Prefix="list/", Delimiter="/")
    assert [o["Key"] for o in v2["Contents"]] == ["list/a", "list/b c+d", "list/z"], v2
    assert [p["Prefix"] for p in v2["CommonPrefixes"]] == ["list/dir/"]
    assert v2["KeyCount"] == 4
    v1 = s3.list_objects(Bucket=bucket, Prefix="list/dir/", Delimiter="/")
    assert [o["Key"] for o in v1["Contents"]] == ["list/dir/1", "list/dir/2"]
    assert [p["Prefix"] for p in v1["CommonPrefixes"]] == ["list/dir/sub/"]
    # Pages of two, v2 with tokens and v1 with markers, see every key once.
    for lister, kwargs in ((s3.get_paginator("list_objects_v2"), {}), (s3.get_paginator("list_objects"), {})):
        seen = [o["Key"] for page in lister.paginate(Bucket=bucket, Prefix="list/", PaginationConfig={"PageSize": 2})
                for o in page.get("Contents", [])]
        assert seen == keys, seen
    after = s3.list_objects_v2(Bucket=bucket, Prefix="list/", StartAfter="list/dir/2")
    assert [o["Key"] for o in after["Contents"]] == ["list/dir/sub/3", "list/z"]
    marker = s3.list_objects(Bucket=bucket, Prefix="list/", Marker="list/dir/2")
    assert [o["Key"] for o in marker["Contents"]] == ["list/dir/sub/3", "list/z"]
    none = s3.list_objects_v2(Bucket=bucket, Prefix="list/", MaxKeys=0)
    assert none["KeyCount"] == 0 and not none["IsTruncated"] and "Contents" not in none
    # botocore asks for encoding-type=url on its own and decodes what comes back (above); asked
    # for explicitly, it leaves the encoded key to the caller.
    raw = s3.list_objects_v2(Bucket=bucket, Prefix="list/b", EncodingType="url")
    assert raw["Contents"][0]["Key"] == "list/b%20c%2Bd", raw


def delete_objects_is_verbose_or_quiet():
    for key in ("del/1", "del/2", "del/3"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    verbose = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "del/1"}, {"Key": "del/none"}]})
    assert sorted(d["Key"] for d in verbose["Deleted"]) == ["del/1", "del/none"], verbose
    quiet = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "del/2"}, {"Key": "del/3"}], "Quiet": True})
    assert not quiet.get("Deleted") and not quiet.get("Errors"), quiet
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix="del/")


def a_multipart_upload_lists_its_parts_and_completes_twice_alike():
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp/obj", ContentType="text/plain", Metadata={"m": "1"})
    uid = upload["UploadId"]
    listed = s3.list_multipart_uploads(Bucket=bucket, Prefix="mp/")
    assert [(u["Key"], u["UploadId"]) for u in listed["Uploads"]] == [("mp/obj", uid)], listed
    other = s3.create_multipart_upload(Bucket=bucket, Key="mp/sub/deep")["UploadId"]
    grouped = s3.list_multipart_uploads(Bucket=bucket, Prefix="mp/", Delimiter="/")
    assert [u["Key"] for u in grouped["Uploads"]] == ["mp/obj"], grouped
    assert [p["Prefix"] for p in grouped["CommonPrefixes"]] == ["mp/sub/"], grouped
    s3.abort_multipart_upload(Bucket=bucket, Key="mp/sub/deep", UploadId=other)
    parts = [b"a" * (5 * MiB), b"b" * 100]
    etags = [s3.upload_part(Bucket=bucket, Key="mp/obj", UploadId=uid, PartNumber=n + 1, Body=p)["ETag"]
             for n, p in enumerate(parts)]
    got = s3.list_parts(Bucket=bucket, Key="mp/obj", UploadId=uid)
    assert [(p["PartNumber"], p["ETag"], p["Size"]) for p in got["Parts"]] == \
        [(1, etags[0], 5 * MiB), (2, etags[1], 100)], got
    page = s3.list_parts(Bucket=bucket, Key="mp/obj", UploadId=uid, MaxParts=1)
    assert page["IsTruncated"] and page["NextPartNumberMarker"] == 1
    done = {"Parts": [{"PartNumber": n + 1, "ETag": e} for n, e in enumerate(etags)]}
    first = s3.complete_multipart_upload(Bucket=bucket, Key="mp/obj", UploadId=uid, MultipartUpload=done)
    again = s3.complete_multipart_upload(Bucket=bucket, Key="mp/obj", UploadId=uid, MultipartUpload=done)
    assert first["ETag"] == again["ETag"] and first["ETag"].strip('"').endswith("-2"), (first, again)
    head = s3.head_object(Bucket=bucket, Key="mp/obj")
    assert (head["ContentLength"], head["Metadata"]) == (5 * MiB + 100, {"m": "1"}), head
    part2 = s3.get_object(Bucket=bucket, Key="mp/obj", PartNumber=2)
    assert part2["Body"].read() == parts[1] and part2["PartsCount"] == 2
    head1 = s3.head_object(Bucket=bucket, Key="mp/obj", PartNumber=1)
    assert (head1["ContentLength"], head1["PartsCount"]) == (5 * MiB, 2), head1
    assert error_of(s3.head_object, Bucket=bucket, Key="mp/obj", PartNumber=3)[0] == 416
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=bucket, Prefix="mp/")
    # Once another write replaced the object, the old upload is gone for good.
    s3.put_object(Bucket=bucket, Key="mp/obj", Body=b"new")
    assert error_of(s3.complete_multipart_upload, Bucket=bucket, Key="mp/obj", UploadId=uid,
                    MultipartUpload=done)[1] == "NoSuchUpload"


def stored_checksums_are_returned_when_asked():
    body = b"checked bytes"
    s3.put_object(Bucket=bucket, Key="sum/a", Body=body, ChecksumAlgorithm="SHA256")
    expected = base64.b64encode(hashlib.sha256(body).digest()).decode()
    head = s3.head_object(Bucket=bucket, Key="sum/a", ChecksumMode="ENABLED")
    assert head.get("ChecksumSHA256") == expected, head
    got = s3.get_object(Bucket=bucket, Key="sum/a", ChecksumMode="ENABLED")
    assert got.get("ChecksumSHA256") == expected and got["Body"].read() == body, got
    # Not for a range (it would not match the bytes sent), nor unasked.
    ranged = s3.get_object(Bucket=bucket, Key="sum/a", ChecksumMode="ENABLED", Range="bytes=0-3")
    assert "ChecksumSHA256" not in ranged and ranged["Body"].read() == body[:4], ranged
    raw = s3.head_object(Bucket=bucket, Key="sum/a")
    assert "ChecksumSHA256" not in raw, raw


def multipart_objects_carry_composite_or_full_object_checksums():
    parts = [os.urandom(5 * MiB), os.urandom(1000)]
    b64 = lambda b: base64.b64encode(b).decode()
    # COMPOSITE (the default): the SHA-256 of the parts' SHA-256s, then -<parts>.
    uid = s3.create_multipart_upload(Bucket=bucket, Key="sum/mp", ChecksumAlgorithm="SHA256")["UploadId"]
    done = []
    for n, part in enumerate(parts, 1):
        answer = s3.upload_part(Bucket=bucket, Key="sum/mp", UploadId=uid, PartNumber=n, Body=part,
                                ChecksumAlgorithm="SHA256")
        assert answer["ChecksumSHA256"] == b64(hashlib.sha256(part).digest()), answer
        done.append({"PartNumber": n, "ETag": answer["ETag"], "ChecksumSHA256": answer["ChecksumSHA256"]})
    s3.complete_multipart_upload(Bucket=bucket, Key="sum/mp", UploadId=uid, MultipartUpload={"Parts": done})
    joined = b"".join(hashlib.sha256(p).digest() for p in parts)
    head = s3.head_object(Bucket=bucket, Key="sum/mp", ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == f"{b64(hashlib.sha256(joined).digest())}-2", head
    assert head["ChecksumType"] == "COMPOSITE", head
    # FULL_OBJECT: the CRC32 of the whole object, which botocore checks on GET.
    uid = s3.create_multipart_upload(Bucket=bucket, Key="sum/full", ChecksumAlgorithm="CRC32",
                                     ChecksumType="FULL_OBJECT")["UploadId"]
    done = []
    for n, part in enumerate(parts, 1):
        answer = s3.upload_part(Bucket=bucket, Key="sum/full", UploadId=uid, PartNumber=n, Body=part,
                                ChecksumAlgorithm="CRC32")
        done.append({"PartNumber": n, "ETag": answer["ETag"], "ChecksumCRC32": answer["ChecksumCRC32"]})
    whole = b64(zlib.crc32(b"".join(parts)).to_bytes(4, "big"))
    s3.complete_multipart_upload(Bucket=bucket, Key="sum/full", UploadId=uid, MultipartUpload={"Parts": done},
                                 ChecksumCRC32=whole, ChecksumType="FULL_OBJECT")
    got = s3.get_object(Bucket=bucket, Key="sum/full", ChecksumMode="ENABLED")
    assert got["ChecksumCRC32"] == whole and got["Body"].read() == b"".join(parts), got


def unsupported_operations_answer_not_implemented():
    for call, kwargs in (
        (s3.get_bucket_versioning, {}),
        (s3.get_object_tagging, {"Key": "meta/a.txt"}),
        (s3.get_bucket_policy, {}),
        (s3.delete_bucket, {}),
    ):
        status, code = error_of(call, Bucket=bucket, **kwargs)
        assert (status, code) == (501, "NotImplemented"), (call.__name__, status, code)


for check in (
    buckets_have_a_creation_date_and_the_own_bucket_already_exists,
    metadata_and_standard_headers_round_trip,
    conditional_reads_answer_304_and_412,
    conditional_writes_refuse_with_412,
    copy_keeps_or_replaces_metadata,
    listings_page_group_and_encode,
    delete_objects_is_verbose_or_quiet,
    a_multipart_upload_lists_its_parts_and_completes_twice_alike,
    stored_checksums_are_returned_when_asked,
    multipart_objects_carry_composite_or_full_object_checksums,
    unsupported_operations_answer_not_implemented,
):
    print(check.__name__, flush=True)
    check()
print("boto3 S3 API ok")
