"""The README's screenshot of the browser demo (``docs/demo.png``): the shipped model in f-BRS-B
on a synthetic scene: its largest object finished after one click, the second object with the
protocol's first two clicks.

    python experiments/demo_screenshot.py --out docs/demo.png

Needs the ``demo`` extra, selenium and Debian's ``chromium`` + ``chromium-driver``. Clicks are
the evaluation's (``Clicker``) on the scene's two largest objects.
"""
from __future__ import annotations

import argparse
import io
import shutil
import socket
import threading
import time
import urllib.request

import numpy as np
from PIL import Image


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--out', default='docs/demo.png')
    p.add_argument('--scene', type=int, default=2, help='synthetic eval scene (0-5)')
    p.add_argument('--mode', default='f-BRS-B')
    args = p.parse_args()

    import uvicorn
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    import fbrs_jax
    from fbrs_jax.convert.loading import SHIPPED_CHECKPOINT
    from fbrs_jax.data.synthetic import SyntheticShapes, scene as synthetic_scene
    from fbrs_jax.demo.server import create_app
    from fbrs_jax.eval.clicker import Clicker
    from fbrs_jax.eval.runinfo import enable_compilation_cache

    enable_compilation_cache()
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    app = create_app(fbrs_jax.load_model(SHIPPED_CHECKPOINT), mode=args.mode)
    server = uvicorn.Server(uvicorn.Config(app, host='127.0.0.1', port=port, log_level='warning'))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which('chromium')
    for arg in ('--headless=new', '--no-sandbox', '--disable-dev-shm-usage', '--window-size=1200,800'):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(shutil.which('chromedriver')), options=options)
    try:
        def idle(clicks=None):
            WebDriverWait(driver, 900, 0.1).until(lambda d: d.execute_script(
                'return document.body.dataset.busy === "0" && demo.state !== null'
                + ('' if clicks is None else f' && demo.state.clicks.length === {clicks}')))

        def click(row, col, positive=True):
            canvas = driver.find_element(By.ID, 'canvas')
            scale, size = driver.execute_script('return demo.scale'), canvas.size
            chain = ActionChains(driver).move_to_element_with_offset(
                canvas, round((col + 0.5) * scale - size['width'] / 2), round((row + 0.5) * scale - size['height'] / 2))
            (chain.click() if positive else chain.context_click()).perform()

        driver.get(f'http://127.0.0.1:{port}/')
        idle()
        driver.find_elements(By.CSS_SELECTOR, '#gallery img')[args.scene].click()
        idle()
        scenes = SyntheticShapes('eval', 6)
        _, instances = synthetic_scene(scenes.seed(args.scene))
        ids, areas = np.unique(instances[instances > 0], return_counts=True)
        first, second = (instances == i for i in ids[np.argsort(-areas)[:2]])
        for k, obj in enumerate((first, second)):
            c = Clicker(obj.astype(np.int32)).make_next_click(np.zeros_like(obj))
            click(c.row, c.col)
            idle(1)
            if k == 0:
                driver.find_element(By.ID, 'finish').click()
                idle(0)
        # the protocol's second click on the second object, from the mask the server holds
        clicker = Clicker(second.astype(np.int32))
        clicker.make_next_click(np.zeros_like(second))
        sid = driver.execute_script('return demo.session')
        with urllib.request.urlopen(f'http://127.0.0.1:{port}/api/session/{sid}/mask.png') as r:
            current = np.asarray(Image.open(io.BytesIO(r.read()))) == 2
        c = clicker.make_next_click(current)
        click(c.row, c.col, c.is_positive)
        idle(2)
        driver.save_screenshot(args.out)
        print(f'written {args.out}')
    finally:
        driver.quit()
        server.should_exit = True


if __name__ == '__main__':
    main()
