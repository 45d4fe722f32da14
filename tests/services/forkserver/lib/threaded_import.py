"""A library that starts a thread when imported: a process holding it must not fork workers."""

import threading
import time

threading.Thread(target=time.sleep, args=(60,), daemon=True, name="threaded-import").start()
