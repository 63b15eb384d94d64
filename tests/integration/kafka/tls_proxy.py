# A TLS front for a plaintext broker: accepts TLS on 127.0.0.1:LISTEN with
# CERT (certificate and key in one PEM file) and relays the bytes to
# 127.0.0.1:UPSTREAM. Python's own ssl module: nothing of this project's.
#
# Usage: tls_proxy.py LISTEN UPSTREAM CERT
import asyncio
import ssl
import sys

listen, upstream, cert = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert)


async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


async def serve(client_reader, client_writer):
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", upstream)
    except OSError:
        client_writer.close()
        return
    await asyncio.gather(pipe(client_reader, writer), pipe(reader, client_writer))


async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", listen, ssl=context)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


asyncio.run(main())
