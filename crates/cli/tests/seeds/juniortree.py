# Juniortree (shared/seeds/002_…): the seed's Python example, changed only in host. It sends no
# key: the test server maps the agent "fastgpt" to a project (dialects.juniortree.trusted_agents).
import os, requests

BASE = os.environ["BASE"]
os.chdir(os.environ["WORK"])
with open("document.pdf", "wb") as f:
    f.write(b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n" + os.urandom(30000))

# ---- the seed, verbatim but for the host ----
import requests

url = f'{BASE}/api/v1/upload'
headers = {
    'Agent': 'fastgpt'
}

files = {
    'file': open('document.pdf', 'rb')
}

data = {
    'created_by': 'python_user'
}

response = requests.post(url, headers=headers, files=files, data=data)
result = response.json()

print(f"文件上传成功!访问URL: {result['data']['id']}")
print(f"文件大小: {result['data']['size']} bytes")
# ---- end of the seed ----

assert response.status_code == 200 and result["code"] == 200, result
back = requests.get(result["data"]["id"])
assert back.status_code == 200, back.status_code
assert back.content == open("document.pdf", "rb").read(), "bytes differ"
assert result["data"]["created_by"] == "python_user" and result["data"]["mime_type"] == "application/pdf", result
print("juniortree python: ok")
