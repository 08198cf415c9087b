from __future__ import annotations

from typing import Any

from litestar.testing import AsyncTestClient
from web_support import PASSWORD, csrf_of, sign_in


async def test_signed_out_page_load_redirects_to_signin_with_local_next(
    client: AsyncTestClient[Any],
) -> None:
    response = await client.get("/search?q=is:open", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/signin?next=/search%3Fq%3Dis%3Aopen"


async def test_password_sign_in_lands_on_my_open_issues(client: AsyncTestClient[Any]) -> None:
    await sign_in(client, "bob")
    home = await client.get("/")
    assert "Bob Builder" in home.text
    assert "is:open assignee:me" in home.text


async def test_wrong_password_is_a_401_page_saying_so(client: AsyncTestClient[Any]) -> None:
    page = await client.get("/signin")
    response = await client.post(
        "/signin",
        data={"username": "bob", "password": "nope", "_csrf": csrf_of(page.text)},
    )
    assert response.status_code == 401
    assert "Wrong username or password." in response.text


async def test_sign_in_without_csrf_token_is_refused(client: AsyncTestClient[Any]) -> None:
    await client.get("/signin")
    response = await client.post("/signin", data={"username": "bob", "password": PASSWORD})
    assert response.status_code == 403
    assert "nothing was changed" in response.text


async def test_sign_in_never_redirects_off_site(client: AsyncTestClient[Any]) -> None:
    page = await client.get("/signin")
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:x"):
        response = await client.post(
            "/signin",
            data={
                "username": "bob",
                "password": PASSWORD,
                "_csrf": csrf_of(page.text),
                "next": target,
            },
            follow_redirects=False,
        )
        assert response.status_code == 303
        assert response.headers["location"] == "/"
        page = await client.get("/signin?next=/")
        await client.post("/signout", data={"_csrf": csrf_of((await client.get("/")).text)})
        page = await client.get("/signin")


async def test_sign_out_forgets_the_session(client: AsyncTestClient[Any]) -> None:
    token = await sign_in(client, "carol")
    response = await client.post("/signout", data={"_csrf": token}, follow_redirects=False)
    assert response.status_code == 303
    again = await client.get("/", follow_redirects=False)
    assert again.status_code == 303
    assert again.headers["location"].startswith("/signin")


async def test_tampered_session_cookie_is_no_session(client: AsyncTestClient[Any]) -> None:
    await sign_in(client, "bob")
    name = "bugless_session"
    value = client.cookies[name]
    client.cookies.set(name, value[:-4] + ("AAAA" if not value.endswith("AAAA") else "BBBB"))
    response = await client.get("/", follow_redirects=False)
    assert response.status_code == 303
