"""The route table: every handler with the shared `Emulator` (state.py) as its kwargs.

Imports run one way: this module imports the handlers, the handlers import the state and the
pure rules, and nothing imports this module but the package and `__main__`.
"""
from __future__ import annotations

import tornado.web

from . import api, control, databases, gate, pages
from .state import Emulator


def make_app(emu: Emulator) -> tornado.web.Application:
    kw = {"emu": emu}
    uuidish = r"([^/]+)"
    routes = [
        (r"/v1/file_uploads", api.FileUploadsHandler, kw),
        (rf"/v1/file_uploads/{uuidish}", api.RetrieveHandler, kw),
        (rf"/v1/file_uploads/{uuidish}/send", api.SendHandler, kw),
        (rf"/v1/file_uploads/{uuidish}/complete", api.CompleteHandler, kw),
        (r"/v1/users", api.UsersHandler, kw),
        (r"/v1/users/me", api.UsersMeHandler, kw),
        (rf"/v1/users/{uuidish}", api.UserHandler, kw),
        (r"/v1/pages", pages.PagesHandler, kw),
        (rf"/v1/pages/{uuidish}", pages.PageHandler, kw),
        (rf"/v1/blocks/{uuidish}", pages.BlockHandler, kw),
        (rf"/v1/blocks/{uuidish}/children", pages.BlockChildrenHandler, kw),
        (rf"/v1/databases/{uuidish}", databases.DatabaseHandler, kw),
        (rf"/v1/databases/{uuidish}/query", databases.DatabaseQueryHandler, kw),
        (rf"/v1/data_sources/{uuidish}", databases.DataSourceHandler, kw),
        (rf"/v1/data_sources/{uuidish}/query", databases.DataSourceQueryHandler, kw),
        (r"/_emulator/health", control.HealthHandler, kw),
        (r"/_emulator/uploads", control.UploadsHandler, kw),
        (rf"/_emulator/uploads/{uuidish}", control.UploadHandler, kw),
        (rf"/_emulator/files/{uuidish}", control.FileHandler, kw),
        (rf"/_emulator/blobs/{uuidish}/{uuidish}", control.BlobHandler, kw),
        (r"/_emulator/stats", control.StatsHandler, kw),
        (r"/_emulator/stats/reset", control.StatsResetHandler, kw),
        (r"/_emulator/faults", control.FaultsHandler, kw),
        (r"/_emulator/outage", control.OutageHandler, kw),
        (r"/_emulator/clock", control.ClockHandler, kw),
        (r"/_emulator/plan", control.PlanHandler, kw),
        (r"/_emulator/databases", control.DatabasesHandler, kw),
        (rf"/_emulator/databases/{uuidish}/rows", control.DatabaseRowsHandler, kw),
        (r"/_emulator/.*", control.UnknownControlHandler, kw),
        (r"/.*", gate.UnknownRouteHandler, kw),
    ]
    return tornado.web.Application(routes)
