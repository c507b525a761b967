using StateMesh.Protocol;

namespace StateMesh.Server;

/// <summary>Sends one message to many sessions, encoding it once per codec and sharing the bytes.</summary>
internal static class Fanout
{
    public static int Send(Message message, Session[] sessions, Session? except)
    {
        IMessageCodec? codecA = null, codecB = null;
        ReadOnlyMemory<byte> bytesA = default, bytesB = default;
        var sent = 0;
        foreach (var session in sessions)
        {
            if (ReferenceEquals(session, except))
            {
                continue;
            }
            var codec = session.Codec;
            ReadOnlyMemory<byte> bytes;
            if (ReferenceEquals(codec, codecA))
            {
                bytes = bytesA;
            }
            else if (ReferenceEquals(codec, codecB))
            {
                bytes = bytesB;
            }
            else if (codecA is null)
            {
                codecA = codec;
                bytes = bytesA = session.Encode(message);
            }
            else if (codecB is null)
            {
                codecB = codec;
                bytes = bytesB = session.Encode(message);
            }
            else
            {
                bytes = session.Encode(message);
            }
            if (session.SendEncoded(bytes))
            {
                sent++;
            }
        }
        return sent;
    }
}
