"""``fbrs-jax demo``: the browser demo's web server (Starlette on uvicorn, the ``demo`` extra).

One page (``static/index.html``) and a JSON API under ``/api``. Each page load opens a session
(``session.DemoSession``: its image, clicks, predictor state and finished objects) that lives
until it has been idle for ``session_ttl_s``; the model and its compiled programs are shared.
Requests of one session run one at a time, those of different sessions in parallel (Starlette
runs the handlers in a thread pool). Bad input is a 4xx with ``{"error": one line}``; the server
keeps serving.
"""
from __future__ import annotations

import base64
import dataclasses
import io
import json
import pathlib
import secrets
import threading
import time
import urllib.parse
from typing import Callable, Optional

import numpy as np
from PIL import Image

try:
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse, Response
    from starlette.routing import Route
except ImportError:     # pragma: no cover - depends on the environment
    raise ImportError("the demo needs its extra: pip install 'fbrs-jax[demo]'") from None

from ..data.readers import DatasetError, read_rgb
from ..data.synthetic import SyntheticShapes
from .session import DemoSession, Settings

STATIC = pathlib.Path(__file__).with_name('static')
IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')
MAX_UPLOAD_BYTES = 32 * 2 ** 20
MAX_DECODE_PIXELS = 64 * 10 ** 6      # larger files are refused before decoding


class GalleryImage:
    """A sample image: a synthetic scene (``dataset`` 'synthetic_shapes', which sets ZoomIn's
    defaults as in ``fbrs-jax evaluate``) or a file of ``--images``."""

    def __init__(self, name: str, load: Callable[[], np.ndarray], dataset: str = ''):
        self.name, self._load, self.dataset = name, load, dataset

    def load(self) -> np.ndarray:
        return self._load()


def gallery(images_dir: Optional[str], synthetic: int = 6) -> list[GalleryImage]:
    scenes = SyntheticShapes('eval', synthetic)
    out = [GalleryImage(f'synthetic {scenes.name(i)}', lambda i=i: scenes[i].image, 'synthetic_shapes')
           for i in range(len(scenes))]
    if images_dir:
        folder = pathlib.Path(images_dir)
        if not folder.is_dir():
            raise ValueError(f'--images: no folder {folder}')
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f'--images: no images ({", ".join(IMAGE_SUFFIXES)}) in {folder}')
        out += [GalleryImage(p.name, lambda p=p: read_rgb(p)) for p in files]
    return out


def capped(image: np.ndarray, max_side: int) -> tuple[np.ndarray, str]:
    """The image with its longest side at most ``max_side`` (bilinear), and a note saying so."""
    h, w = image.shape[:2]
    if max(h, w) <= max_side:
        return image, ''
    scale = max_side / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    small = np.asarray(Image.fromarray(image).resize((nw, nh), Image.BILINEAR))
    return small, f'downscaled from {w}x{h} to {nw}x{nh} (the longest side is capped at {max_side})'


def decode_upload(data: bytes) -> np.ndarray:
    if not data:
        raise HTTPException(400, 'the upload is empty')
    if len(data) > MAX_UPLOAD_BYTES:
        raise HTTPException(413, f'the upload is {len(data) / 2**20:.0f} MiB; at most {MAX_UPLOAD_BYTES // 2**20} MiB')
    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
    except Exception:
        raise HTTPException(415, 'the upload is not an image (PNG, JPEG, BMP, TIFF or WebP)') from None
    if w * h > MAX_DECODE_PIXELS:
        raise HTTPException(413, f'the image is {w}x{h}; at most {MAX_DECODE_PIXELS // 10 ** 6} megapixels')
    try:
        return read_rgb(io.BytesIO(data))
    except DatasetError:
        raise HTTPException(415, 'the upload is not an image that can be decoded') from None


def png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format='PNG')
    return buf.getvalue()


def data_url(array: np.ndarray) -> str:
    return 'data:image/png;base64,' + base64.b64encode(png(array)).decode()


class Sessions:
    """Live sessions by id; idle ones expire."""

    def __init__(self, ttl_s: float, limit: int = 64):
        self.ttl_s, self.limit = ttl_s, limit
        self._sessions: dict[str, DemoSession] = {}
        self._lock = threading.Lock()

    def add(self, session: DemoSession, sid: Optional[str] = None) -> str:
        with self._lock:
            self._expire()
            if sid is None and len(self._sessions) >= self.limit:     # the longest idle one goes
                del self._sessions[min(self._sessions, key=lambda k: self._sessions[k].last_used)]
            sid = sid or secrets.token_urlsafe(12)
            self._sessions[sid] = session
            return sid

    def get(self, sid: str) -> DemoSession:
        with self._lock:
            self._expire()
            session = self._sessions.get(sid)
            if session is None:
                raise HTTPException(404, 'this session has expired or is unknown: reload the page to start a new one')
            session.last_used = time.monotonic()
            return session

    def _expire(self) -> None:
        now = time.monotonic()
        for sid in [k for k, s in self._sessions.items() if now - s.last_used > self.ttl_s]:
            del self._sessions[sid]


def create_app(model, *, mode: str = 'f-BRS-B', images_dir: Optional[str] = None, max_side: int = 1024,
               session_ttl_s: float = 1800.0) -> Starlette:
    """The demo's application for ``model``; ``mode`` is the page's initial mode."""
    initial = Settings(mode=mode)
    samples = gallery(images_dir)
    sessions = Sessions(session_ttl_s)

    def state(sid: str, session: DemoSession, **extra) -> JSONResponse:
        h, w = session.hw
        s = session.settings
        return JSONResponse({
            'session': sid, 'image': {'name': session.image_name, 'width': w, 'height': h, 'key': session.key},
            'settings': {'mode': s.mode, 'zoom_in': s.zoom_in, 'zoom_target': s.zoom_target,
                         'clicks_limit': s.clicks_limit},
            'zoom_default': session.zoom_default['target_size'], 'prob_thresh': session.prob_thresh,
            'clicks': [[c.col, c.row, c.is_positive] for c in session.clicks],
            'objects': session.object_count, 'objects_png': data_url(session.objects),
            'probs_png': None if session.probs is None else data_url(np.round(255 * session.probs).astype(np.uint8)),
            **extra})

    async def body_json(request: Request) -> dict:
        try:
            body = json.loads(await request.body() or b'{}')
        except ValueError:
            raise HTTPException(400, 'the request body is not JSON') from None
        if not isinstance(body, dict):
            raise HTTPException(400, 'the request body must be a JSON object')
        return body

    def sample(body: dict) -> GalleryImage:
        index = body.get('sample', 0)
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(samples):
            raise HTTPException(404, f'no sample image {index!r}; there are {len(samples)} (0 to {len(samples) - 1})')
        return samples[index]

    def settings_from(body: dict, base: Settings) -> Settings:
        fields = {k: body[k] for k in ('mode', 'zoom_in', 'zoom_target', 'clicks_limit') if k in body}
        unknown = set(body) - set(fields)
        if unknown:
            raise HTTPException(422, f'unknown settings {", ".join(sorted(unknown))}')
        try:
            return dataclasses.replace(base, **fields)
        except ValueError as e:
            raise HTTPException(422, str(e)) from None

    def open_image(sid: Optional[str], image: np.ndarray, name: str, dataset: str, note: str = '') -> JSONResponse:
        settings = sessions.get(sid).settings if sid else initial
        session = DemoSession(model, image, name, settings, dataset)
        sid = sessions.add(session, sid)
        return state(sid, session, note=note)

    def thresh_of(value, session: DemoSession) -> float:
        if value is None:
            return session.prob_thresh
        try:
            t = float(value)
        except (TypeError, ValueError):
            t = float('nan')
        if not 0.0 <= t < 1.0:
            raise HTTPException(422, f'thresh must be a number in [0, 1), got {value!r}')
        return t

    # -- endpoints ------------------------------------------------------------------------
    async def index(request: Request):
        return FileResponse(STATIC / 'index.html')

    async def list_gallery(request: Request):
        return JSONResponse([{'id': i, 'name': g.name} for i, g in enumerate(samples)])

    def gallery_image(request: Request):
        try:
            index = int(request.path_params['index'])
        except ValueError:
            raise HTTPException(404, 'no such sample image') from None
        image, _ = capped(sample({'sample': index}).load(), max_side)
        return Response(png(image), media_type='image/png')

    async def new_session(request: Request):
        body = await body_json(request)
        g = sample(body)
        image, note = capped(g.load(), max_side)
        return await _threaded(open_image, None, image, g.name, g.dataset, note)

    async def set_image(request: Request):
        sid = request.path_params['sid']
        sessions.get(sid)
        g = sample(await body_json(request))
        image, note = capped(g.load(), max_side)
        return await _threaded(open_image, sid, image, g.name, g.dataset, note)

    async def upload(request: Request):
        sid = request.path_params['sid']
        sessions.get(sid)
        data = await request.body()
        image, note = capped(decode_upload(data), max_side)
        name = urllib.parse.unquote(request.headers.get('x-filename', 'upload'))[:120]
        return await _threaded(open_image, sid, image, name, '', note)

    def session_image(request: Request):
        session = sessions.get(request.path_params['sid'])
        return Response(png(session.image), media_type='image/png')

    def action(run: Callable[[DemoSession, dict], dict]):
        """A session endpoint: the body's JSON, the session's lock, ValueError -> 422."""
        async def endpoint(request: Request):
            sid = request.path_params['sid']
            body = await body_json(request)
            session = sessions.get(sid)

            def locked():
                with session.lock:
                    try:
                        extra = run(session, body) or {}
                    except ValueError as e:
                        raise HTTPException(422, str(e).splitlines()[0]) from None
                    return state(sid, session, **extra)
            return await _threaded(locked)
        return endpoint

    def click(session: DemoSession, body: dict) -> dict:
        try:
            x, y, positive = float(body['x']), float(body['y']), body.get('positive', True)
        except (KeyError, TypeError, ValueError):
            raise ValueError('a click needs numbers x and y (pixels of the image) and positive true/false') from None
        if not isinstance(positive, bool):
            raise ValueError(f'positive must be true or false, got {positive!r}')
        return {'stats': session.click(y, x, positive)}

    def settings(session: DemoSession, body: dict) -> None:
        session.set_settings(settings_from(body, session.settings))

    def finish(session: DemoSession, body: dict) -> dict:
        return {'finished': session.finish(thresh_of(body.get('thresh'), session))}

    def mask(request: Request):
        session = sessions.get(request.path_params['sid'])
        with session.lock:
            instance = session.instance_mask(thresh_of(request.query_params.get('thresh'), session))
        stem = pathlib.Path(session.image_name).stem.replace(' ', '_') or 'image'
        return Response(png(instance), media_type='image/png',
                        headers={'Content-Disposition': f'attachment; filename="{stem}_mask.png"'})

    async def http_error(request: Request, exc: HTTPException):
        return JSONResponse({'error': exc.detail}, status_code=exc.status_code)

    async def server_error(request: Request, exc: Exception):
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return JSONResponse({'error': f'internal error: {message}'}, status_code=500)

    routes = [
        Route('/', index), Route('/api/gallery', list_gallery),
        Route('/api/gallery/{index}.png', gallery_image),
        Route('/api/session', new_session, methods=['POST']),
        Route('/api/session/{sid}/image', set_image, methods=['POST']),
        Route('/api/session/{sid}/upload', upload, methods=['POST']),
        Route('/api/session/{sid}/image.png', session_image),
        Route('/api/session/{sid}/mask.png', mask),
        Route('/api/session/{sid}/click', action(click), methods=['POST']),
        Route('/api/session/{sid}/undo', action(lambda s, b: s.undo()), methods=['POST']),
        Route('/api/session/{sid}/reset', action(lambda s, b: s.reset()), methods=['POST']),
        Route('/api/session/{sid}/finish', action(finish), methods=['POST']),
        Route('/api/session/{sid}/settings', action(settings), methods=['POST']),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: http_error, Exception: server_error})


async def _threaded(fn, *args):
    """Run blocking work (prediction, decoding) off the event loop."""
    return await run_in_threadpool(fn, *args)


def serve(app: Starlette, host: str, port: int, announce: Callable[[str], None] = print) -> None:
    """Run ``app`` until interrupted, announcing its URL."""
    import uvicorn
    config = uvicorn.Config(app, host=host, port=port, log_level='warning')
    server = uvicorn.Server(config)
    announce(f'fbrs-jax demo: http://{host}:{port}/ (Ctrl-C to stop)')
    server.run()
