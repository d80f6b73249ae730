import pytest
from django.template.loader import render_to_string


def test_the_server_error_page_renders_without_any_context():
    html = render_to_string("500.html")
    assert "Something went wrong on our side" in html


@pytest.mark.django_db
def test_an_unknown_page_answers_404_inside_the_site_layout(client):
    response = client.get("/no-such-page")
    assert response.status_code == 404
    assert b"There is nothing here, or it is not yours to see." in response.content
    assert b'class="navbar' in response.content
