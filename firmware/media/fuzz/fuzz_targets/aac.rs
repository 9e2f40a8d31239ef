//! AAC parsing on arbitrary bytes: `AudioSpecificConfig::parse` and the
//! ADTS frame splitter never panic; what parses writes back the same bits;
//! every frame found lies inside the input and is as long as its header
//! says. The frames then go through the MPEG-TS muxer (whole 188-byte
//! packets) and into an fMP4 fragment with audio (boxes tile, the audio
//! trun's data offset points at the frames).
#![no_main]

use libfuzzer_sys::fuzz_target;
use roomcast_media::aac::{adts_frames, AdtsHeader, AudioSpecificConfig};
use roomcast_media::fmp4::{write_av_fragment, AudioSample};
use roomcast_media::time::Ticks90k;
use roomcast_media::ts::{TsConfig, TsMuxer, PACKET_SIZE};

fuzz_target!(|data: &[u8]| {
    if let Ok(asc) = AudioSpecificConfig::parse(data) {
        let bytes = asc.to_bytes();
        assert_eq!(bytes[0], data[0]);
        assert_eq!(bytes[1], data[1] & 0xf8);
        assert_eq!(AudioSpecificConfig::parse(&bytes), Ok(asc));
        let len = data.len() * 37;
        match asc.adts_header(len) {
            Ok(h) => {
                let back = AdtsHeader::parse(&h).expect("own ADTS header parses");
                assert_eq!(back.config, asc);
                assert_eq!(usize::from(back.frame_len), 7 + len);
            }
            Err(_) => assert!(len > 8184),
        }
    }

    let mut frames = Vec::new();
    let mut used = 0;
    for f in adts_frames(data) {
        let Ok(f) = f else { break };
        assert_eq!(f.frame.len(), usize::from(f.header.frame_len));
        assert_eq!(f.frame.len(), f.header.header_len() + f.payload.len());
        assert_eq!(&data[used..used + f.frame.len()], f.frame);
        used += f.frame.len();
        frames.push(f);
    }

    let mut mux = TsMuxer::with_audio(TsConfig::default(), 0x101);
    let mut out = Vec::new();
    for (k, f) in frames.iter().enumerate() {
        let pts = Ticks90k(k as u64 * 1920);
        mux.write_audio(pts, f.frame, &mut out);
        mux.write_aac(pts, &f.header.config, f.payload, &mut out)
            .expect("an ADTS payload fits an ADTS frame");
    }
    mux.write_audio(Ticks90k(u64::MAX), data, &mut out);
    assert_eq!(out.len() % PACKET_SIZE, 0);
    assert!(out.chunks(PACKET_SIZE).all(|p| p[0] == 0x47));

    let audio: Vec<AudioSample> = frames
        .iter()
        .enumerate()
        .map(|(k, f)| AudioSample {
            dts: k as u64 * 1024,
            duration: 1024,
            data: f.payload,
        })
        .collect();
    let mut frag = Vec::new();
    let n = write_av_fragment(1, &[], &audio, &mut frag);
    assert_eq!(n, frag.len());
    if audio.is_empty() {
        assert_eq!(n, 0);
        return;
    }
    let moof = u32::from_be_bytes(frag[..4].try_into().unwrap()) as usize;
    let mdat = u32::from_be_bytes(frag[moof..moof + 4].try_into().unwrap()) as usize;
    assert_eq!(moof + mdat, frag.len());
    // mfhd 16, traf header 8, tfhd 16, tfdt 20, then trun: offset at +16.
    let at = 8 + 16 + 8 + 16 + 20 + 16;
    let offset = u32::from_be_bytes(frag[at..at + 4].try_into().unwrap()) as usize;
    assert_eq!(offset, moof + 8);
    let payload: Vec<u8> = frames
        .iter()
        .flat_map(|f| f.payload.iter().copied())
        .collect();
    assert_eq!(&frag[offset..], &payload[..]);
});
