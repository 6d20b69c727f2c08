"""The browser demo (``fbrs-jax demo``): its page driven in headless Chromium through Selenium
(Debian's ``chromium`` and ``chromium-driver``, which ``.ci/run`` installs), and its API's
answers to bad input. The server runs in this process on the shipped model, in NoBRS, so that
it shares compiled programs with the CLI tests."""
from __future__ import annotations

import io
import json
import os
import shutil
import socket
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from PIL import Image

from fbrs_jax.data.synthetic import SyntheticShapes
from fbrs_jax.clicks import Click
from fbrs_jax.eval.clicker import Clicker

CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser')
CHROMEDRIVER = shutil.which('chromedriver')
# without a browser these tests skip with the reason, unless FBRS_REQUIRE_BROWSER is set (.ci/run)
needs_browser = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER) and not os.environ.get('FBRS_REQUIRE_BROWSER'),
                                   reason='needs chromium and chromedriver (apt-get install chromium chromium-driver)')
WAIT_S = 600          # a first click compiles its programs (a minute or two on a 2-core CPU)


@pytest.fixture(scope='module')
def server():
    import uvicorn
    import fbrs_jax
    from fbrs_jax.convert.loading import SHIPPED_CHECKPOINT
    from fbrs_jax.demo.server import create_app
    model = fbrs_jax.load_model(SHIPPED_CHECKPOINT)
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    app = create_app(model, mode='NoBRS', max_side=512)
    srv = uvicorn.Server(uvicorn.Config(app, host='127.0.0.1', port=port, log_level='warning'))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    while not srv.started:
        time.sleep(0.05)
    yield {'url': f'http://127.0.0.1:{port}', 'model': model}
    srv.should_exit = True
    thread.join(10)


def call(url, body=None, raw=None, method='POST'):
    """-> (status, decoded JSON or bytes)."""
    data = raw if raw is not None else None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=WAIT_S) as r:
            content, status, kind = r.read(), r.status, r.headers.get('content-type', '')
    except urllib.error.HTTPError as e:
        content, status, kind = e.read(), e.code, e.headers.get('content-type', '')
    return status, json.loads(content) if 'json' in kind else content


def mask(server, sid) -> np.ndarray:
    status, content = call(f"{server['url']}/api/session/{sid}/mask.png", method='GET')
    assert status == 200
    return np.asarray(Image.open(io.BytesIO(content)))


def first_click(index):
    """The protocol's first click on synthetic eval scene ``index`` (inside the object, farthest from its border)."""
    gt = SyntheticShapes('eval', 6)[index].gt
    return gt, Clicker(gt).make_next_click(np.zeros_like(gt, bool))


def iou(a, b) -> float:
    return float((a & b).sum() / (a | b).sum())


@pytest.fixture()
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    drivers = []

    def start():
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for arg in ('--headless=new', '--no-sandbox', '--disable-dev-shm-usage', '--window-size=1300,1000'):
            options.add_argument(arg)
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        drivers.append(driver)
        return driver
    yield start
    for d in drivers:
        d.quit()


def idle(driver, clicks=None):
    """Wait until the page has its session and no request in flight (and ``clicks`` clicks)."""
    from selenium.webdriver.support.ui import WebDriverWait
    WebDriverWait(driver, WAIT_S, poll_frequency=0.1).until(lambda d: d.execute_script(
        'return document.body.dataset.busy === "0" && demo.state !== null'
        + ('' if clicks is None else f' && demo.state.clicks.length === {clicks}')))
    return driver.execute_script('return demo.state')


def click_pixel(driver, row, col, positive=True):
    """A real mouse click on image pixel (row, col) of the page's canvas (Selenium's offsets are
    from the element's centre; the canvas has a 1-pixel border, equal on both sides)."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    canvas = driver.find_element(By.ID, 'canvas')
    scale = driver.execute_script('return demo.scale')
    size = canvas.size
    dx, dy = (col + 0.5) * scale - size['width'] / 2, (row + 0.5) * scale - size['height'] / 2
    chain = ActionChains(driver).move_to_element_with_offset(canvas, round(dx), round(dy))
    (chain.click() if positive else chain.context_click()).perform()


def stats_rows(driver):
    from selenium.webdriver.common.by import By
    return [[td.text for td in tr.find_elements(By.TAG_NAME, 'td')]
            for tr in driver.find_elements(By.CSS_SELECTOR, '#stats tr')]


@needs_browser
def test_clicks_in_the_browser(server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select
    from fbrs_jax.cli import main
    # what `fbrs-jax evaluate` gives the shipped model on this scene after one click
    assert main(['evaluate', '--mode', 'NoBRS', '--max-samples', '1', '--n-clicks', '1', '--out', str(tmp_path / 'e'),
                 '--quiet']) == 0
    record = json.loads((tmp_path / 'e' / 'synthetic_shapes.jsonl').read_text().splitlines()[0])
    evaluated = record['ious'][0]
    gt, c = first_click(0)
    gt = gt == 1
    driver = browser()
    driver.get(server['url'])
    state = idle(driver)
    sid = state['session']
    assert state['image']['name'] == 'synthetic eval_00000' and state['settings']['mode'] == 'NoBRS'

    click_pixel(driver, c.row, c.col)                       # left: positive, on the object's centre
    state = idle(driver, clicks=1)
    assert state['clicks'] == [[c.col, c.row, True]]
    one = mask(server, sid)
    assert iou(one == 1, gt) >= evaluated - 0.01, (iou(one == 1, gt), evaluated)
    shown = driver.execute_script(
        'let n = 0; const t = Math.round(parseFloat(document.getElementById("thresh")'
        '.value) * 255); for (let i = 0; i < demo.probs.length; i += 4) n += demo.probs[i] > t;'
        ' return n;'
    )
    assert abs(shown - int((one == 1).sum())) <= 0.01 * gt.size      # the page draws what the server holds
    assert stats_rows(driver)[0][:2] == ['1', 'NoBRS']

    background = np.argwhere(~gt)[0]                         # right: negative, outside the object
    click_pixel(driver, *background, positive=False)
    state = idle(driver, clicks=2)
    assert state['clicks'][1] == [int(background[1]), int(background[0]), False]

    driver.find_element(By.ID, 'undo').click()
    idle(driver, clicks=1)
    assert np.array_equal(mask(server, sid), one)            # back to the state after the first click
    driver.find_element(By.ID, 'reset').click()
    idle(driver, clicks=0)
    assert not mask(server, sid).any()

    Select(driver.find_element(By.ID, 'mode')).select_by_visible_text('f-BRS-B')
    state = idle(driver)
    assert state['settings']['mode'] == 'f-BRS-B'
    click_pixel(driver, c.row, c.col)
    idle(driver, clicks=1)
    assert stats_rows(driver)[-1][1] == 'f-BRS-B'
    driver.find_element(By.ID, 'finish').click()
    state = idle(driver, clicks=0)
    assert state['objects'] == 1 and set(np.unique(mask(server, sid))) == {0, 1}

    (tmp_path / 'notes.txt').write_text('not an image')
    driver.find_element(By.ID, 'upload').send_keys(str(tmp_path / 'notes.txt'))
    from selenium.webdriver.support.ui import WebDriverWait
    WebDriverWait(driver, 60).until(lambda d: 'not an image' in d.find_element(By.ID, 'error').text)
    assert call(f"{server['url']}/api/gallery", method='GET')[0] == 200       # still serving
    assert idle(driver)['objects'] == 1                                      # and the session is intact


@needs_browser
def test_two_browser_sessions_stay_independent(server, browser):
    from fbrs_jax.eval.evaluate import zoom_in_params
    from fbrs_jax.inference.factory import make_predictor
    from selenium.webdriver.common.by import By
    pages = [browser(), browser()]
    expected, sids = [], []
    for page, index in zip(pages, (1, 2)):
        page.get(server['url'])
        idle(page)
        page.find_elements(By.CSS_SELECTOR, '#gallery img')[index].click()
        state = idle(page)
        assert state['image']['name'] == f'synthetic eval_{index:05d}'
        sids.append(state['session'])
        gt, c = first_click(index)
        predictor = make_predictor(server['model'], 'NoBRS', zoom_in=zoom_in_params('synthetic_shapes'))
        predictor.set_image(SyntheticShapes('eval', 6)[index].image)
        expected.append((predictor.predict([c]) > predictor.spec.prob_thresh, c))
    assert sids[0] != sids[1]
    for page, (_, c) in zip(pages, expected):               # both clicks in flight at once
        click_pixel(page, c.row, c.col)
    for page, sid, (want, c) in zip(pages, sids, expected):
        state = idle(page, clicks=1)
        assert state['clicks'] == [[c.col, c.row, True]]
        got = mask(server, sid) == 1
        assert np.array_equal(got, want), (iou(got, want), got.sum(), want.sum())


def test_predictor_state_restores_a_click(server):
    """Undo's basis: f-BRS-B's variables warm-start from the previous click, so after a state is
    restored the next click must give exactly what it gave from that state before."""
    from fbrs_jax.eval.evaluate import zoom_in_params
    from fbrs_jax.inference.factory import make_predictor
    gt, c1 = first_click(0)
    predictor = make_predictor(server['model'], 'f-BRS-B', zoom_in=zoom_in_params('synthetic_shapes'))
    predictor.set_image(SyntheticShapes('eval', 6)[0].image)
    clicker = Clicker(gt)
    clicker.make_next_click(np.zeros_like(gt, bool))
    c2 = clicker.make_next_click(predictor.predict([c1]) > 0.49)
    after_one = predictor.get_state()
    two = predictor.predict([c1, c2])
    evals = predictor.stats.num_evals
    inside = np.argwhere(two > 0.49)
    far = inside[np.argmax(((inside - [c1.row, c1.col]) ** 2).sum(1))]
    predictor.predict([c1, c2, Click(int(far[0]), int(far[1]), False)])      # a contradiction: optimised
    assert predictor.stats.num_evals > 1
    again = predictor.predict([c1, c2])          # from the third click's variables: not the same
    assert not np.array_equal(again, two)
    predictor.set_state(after_one)
    assert np.array_equal(predictor.predict([c1, c2]), two) and predictor.stats.num_evals == evals > 0
    with pytest.raises(ValueError, match='current image'):
        predictor.set_image(np.zeros((64, 64, 3), np.uint8))
        predictor.set_state(after_one)


def test_bad_requests_get_a_4xx_with_one_line(server):
    url = server['url']
    status, state = call(f'{url}/api/session', {'sample': 3})
    assert status == 200 and state['image']['width'] == 160
    sid = state['session']
    cases = [
        (f'{url}/api/session/{sid}/click', {'x': 160, 'y': 5}, 422, 'outside the 160x120 image'),
        (f'{url}/api/session/{sid}/click', {'x': 'left'}, 422, 'needs numbers x and y'),
        (f'{url}/api/session/{sid}/settings', {'mode': 'g-BRS'}, 422, "unknown mode 'g-BRS'"),
        (f'{url}/api/session/{sid}/settings', {'zoom_target': 7}, 422, 'zoom_target must be an integer'),
        (f'{url}/api/session/{sid}/undo', {}, 422, 'no click to undo'),
        (f'{url}/api/session/{sid}/finish', {}, 422, 'no object to finish'),
        (f'{url}/api/session/{sid}/image', {'sample': 99}, 404, 'no sample image 99'),
        (f'{url}/api/session/expired/click', {'x': 1, 'y': 1}, 404, 'expired'),
    ]
    for target, body, code, message in cases:
        status, answer = call(target, body)
        assert status == code and message in answer['error'] and '\n' not in answer['error'], (target, answer)
    status, answer = call(f'{url}/api/session/{sid}/click', raw=b'{x')
    assert status == 400 and 'not JSON' in answer['error']
    status, answer = call(f'{url}/api/session/{sid}/upload', raw=b'GIF89a but not really')
    assert status == 415 and 'not an image' in answer['error']
    big = io.BytesIO()
    Image.fromarray(np.full((100, 2000, 3), 200, np.uint8)).save(big, format='PNG')
    status, answer = call(f'{url}/api/session/{sid}/upload', raw=big.getvalue())
    assert status == 200 and answer['image']['width'] == 512 and answer['image']['height'] == 26
    assert 'downscaled from 2000x100 to 512x26' in answer['note']
    assert call(f'{url}/api/gallery', method='GET')[0] == 200


def test_idle_sessions_expire():
    from fbrs_jax.demo.server import HTTPException, Sessions

    class Stub:
        last_used = time.monotonic()
    sessions = Sessions(ttl_s=0.05)
    sid = sessions.add(Stub())
    assert isinstance(sessions.get(sid), Stub)
    time.sleep(0.1)
    with pytest.raises(HTTPException, match='expired'):
        sessions.get(sid)


def test_demo_command_errors_are_one_line(capsys, monkeypatch):
    import sys
    from fbrs_jax.cli import main
    assert main(['demo', '--mode', 'g-BRS']) == 2
    assert "unknown mode 'g-BRS'" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, 'starlette.applications', None)       # as if the extra were missing
    monkeypatch.delitem(sys.modules, 'fbrs_jax.demo.server', raising=False)
    assert main(['demo']) == 2
    assert "pip install 'fbrs-jax[demo]'" in capsys.readouterr().err
