"""The production URLs plus /webhook/ceiling/<token>; under /webhook/ so it takes the same lean WSGI path."""

from django.urls import path

from bench.ceiling.views import ceiling
from justtrades.urls import urlpatterns as production_urlpatterns

urlpatterns = [path("webhook/ceiling/<str:token>", ceiling), *production_urlpatterns]
