# The client's side after the runner: the task succeeded, and the result's download_url serves
# the output's bytes.
import os

import requests

os.chdir(os.environ["WORK"])
BASE = os.environ["BASE"] + "/api/v1/r"
H = {"Authorization": f"Bearer {os.environ['API_KEY']}"}
task_id = open("task_id").read().strip()

task = requests.get(f"{BASE}/tasks/{task_id}", headers=H).json()
assert task["status"] == "succeeded" and task["attempts"] == 1, task
result = requests.get(f"{BASE}/tasks/{task_id}/result", headers=H).json()
assert result["status"] == "succeeded", result
assert [o["file_name"] for o in result["outputs"]] == ["enhanced.png"], result
got = requests.get(result["download_url"])
assert got.status_code == 200, got.status_code
assert got.content == open("output.png", "rb").read(), "the output's bytes differ"
print("cyberun result: ok")
