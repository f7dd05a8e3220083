import { describe, expect, it } from "@effect/vitest"
import { Either } from "effect"
import { FrameDecoder, frameHeader } from "../../src/actors/frame.js"

const frame = (text: string) => {
  const payload = Buffer.from(text)
  return Buffer.concat([frameHeader(payload.length), payload])
}

const texts = (frames: ReadonlyArray<Buffer>) => frames.map((f) => f.toString())

describe("FrameDecoder", () => {
  it("cuts frames that arrive together in one chunk", () => {
    const decoder = new FrameDecoder()
    const result = decoder.push(Buffer.concat([frame("one"), frame(""), frame("three")]))
    expect(texts(Either.getOrThrow(result))).toEqual(["one", "", "three"])
  })

  it("reassembles frames that arrive one byte at a time", () => {
    const decoder = new FrameDecoder()
    const bytes = Buffer.concat([frame("hello"), frame("world!")])
    const frames: Array<Buffer> = []
    for (let i = 0; i < bytes.length; i++) frames.push(...Either.getOrThrow(decoder.push(bytes.subarray(i, i + 1))))
    expect(texts(frames)).toEqual(["hello", "world!"])
  })

  it("keeps the bytes of the next frame that arrive with the end of this one", () => {
    const decoder = new FrameDecoder()
    const bytes = Buffer.concat([frame("first"), frame("second")])
    expect(texts(Either.getOrThrow(decoder.push(bytes.subarray(0, 12))))).toEqual(["first"])
    expect(texts(Either.getOrThrow(decoder.push(bytes.subarray(12))))).toEqual(["second"])
  })

  it("refuses a frame longer than the maximum as soon as its header arrives", () => {
    const decoder = new FrameDecoder(8)
    const result = decoder.push(frameHeader(9))
    expect(Either.isLeft(result) && result.left._tag).toBe("FrameTooLarge")
  })
})
